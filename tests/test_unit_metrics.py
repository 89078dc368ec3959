"""The recent competitions' metrics against second implementations written
from their official definitions (tests/metric_references.py), to 1e-6, on
random data and on edge cases: a class absent, all predictions equal,
missing labels."""

from __future__ import annotations

import metric_references as ref
import numpy as np
import pandas as pd
import pytest

from competition.evaluation.ranking import balanced_accuracy, partial_auc, weighted_column_auc
from competition.evaluation.weighted_losses import (
    AnyOf,
    SoftmaxGroup,
    group_losses,
    grouped_log_loss,
    label_weighted_log_loss,
)

TOL = 1e-6


def _softmax(rng, rows: int, classes: int) -> np.ndarray:
    logits = rng.normal(size=(rows, classes)) * 1.5
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _one_hot(classes: np.ndarray, width: int) -> np.ndarray:
    return np.eye(width)[classes]


# --- Cervical Spine 2022 -------------------------------------------------------

CERVICAL_NEG, CERVICAL_POS = [7] + [1] * 7, [14] + [2] * 7


def _cervical_frames(y_true, y_pred):
    rows_true, rows_pred = [], []
    for i in range(len(y_true)):
        for k, label in enumerate(ref.CERVICAL):
            if np.isnan(y_true[i, k]):
                continue  # a missing label has no solution row
            rows_true.append((f"{1000 + i}_{label}", y_true[i, k]))
            rows_pred.append((f"{1000 + i}_{label}", y_pred[i, k]))
    columns = ["row_id", "fractured"]
    return pd.DataFrame(rows_true, columns=columns), pd.DataFrame(rows_pred, columns=columns)


def _cervical_both(y_true, y_pred):
    mine = label_weighted_log_loss(y_true, y_pred, CERVICAL_NEG, CERVICAL_POS)
    return mine, ref.cervical(*_cervical_frames(y_true, y_pred))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cervical_matches_the_official_definition(seed):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((40, 8)) < 0.3).astype(float)
    y_true[:, 0] = y_true[:, 1:].max(axis=1)  # patient_overall: any vertebra
    y_pred = rng.uniform(0.01, 0.99, size=(40, 8))
    mine, theirs = _cervical_both(y_true, y_pred)
    assert mine == pytest.approx(theirs, abs=TOL)


def test_cervical_edge_cases():
    rng = np.random.default_rng(3)
    negative = np.zeros((10, 8))  # every label negative: weights 7 and 1 only
    mine, theirs = _cervical_both(negative, rng.uniform(0.01, 0.99, (10, 8)))
    assert mine == pytest.approx(theirs, abs=TOL)
    equal = np.full((10, 8), 0.5)  # all predictions equal: log 2 whatever the weights
    mine, theirs = _cervical_both((rng.random((10, 8)) < 0.5).astype(float), equal)
    assert mine == pytest.approx(theirs, abs=TOL) == pytest.approx(np.log(2), abs=TOL)
    missing = (rng.random((10, 8)) < 0.5).astype(float)
    missing[rng.random((10, 8)) < 0.3] = np.nan
    missing[4] = np.nan  # a study with no label is left out
    y_pred = rng.uniform(0.01, 0.99, (10, 8))
    mine, theirs = _cervical_both(missing, y_pred)
    assert mine == pytest.approx(theirs, abs=TOL)
    assert mine == pytest.approx(
        _cervical_both(np.delete(missing, 4, 0), np.delete(y_pred, 4, 0))[0]
    )


# --- Abdominal Trauma 2023 -----------------------------------------------------

ABDOMINAL_COLUMNS = [
    c for o in ref.ABDOMINAL_BINARY + ref.ABDOMINAL_TRIPLE for c in ref.abdominal_columns(o)
]


def _abdominal_structure():
    groups, start, members = [], 0, []
    for organ in ref.ABDOMINAL_BINARY + ref.ABDOMINAL_TRIPLE:
        width = len(ref.abdominal_columns(organ))
        weights = {"bowel": (1, 2), "extravasation": (1, 6)}.get(organ, (1, 2, 4))
        member = slice(start, start + width)
        groups.append(SoftmaxGroup(organ, (member,), weights))
        members.append(member)
        start += width
    any_injury = AnyOf(
        "any_injury", tuple(members), ((1, 1, 1),) * len(members), absent_class=0, weights=(1, 6)
    )
    return groups, any_injury


def _abdominal_case(rng, patients: int, absent: str | None = None):
    truth, pred = [], []
    for organ in ref.ABDOMINAL_BINARY + ref.ABDOMINAL_TRIPLE:
        width = len(ref.abdominal_columns(organ))
        classes = rng.choice(width, size=patients, p=[0.6] + [0.4 / (width - 1)] * (width - 1))
        if organ == absent:
            classes[classes == width - 1] = 0
        truth.append(_one_hot(classes, width))
        pred.append(_softmax(rng, patients, width) * rng.uniform(0.5, 2.0, (patients, 1)))
    return np.concatenate(truth, axis=1), np.concatenate(pred, axis=1)


def _abdominal_both(y_true, y_pred):
    groups, any_injury = _abdominal_structure()
    mine = grouped_log_loss(y_true, y_pred, groups, any_injury)
    solution = ref.abdominal_solution(pd.DataFrame(y_true, columns=ABDOMINAL_COLUMNS))
    theirs = ref.abdominal(solution, pd.DataFrame(y_pred, columns=ABDOMINAL_COLUMNS))
    return mine, theirs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_abdominal_matches_the_official_definition(seed):
    # predictions that do not sum to 1: both renormalise each organ's row
    mine, theirs = _abdominal_case(np.random.default_rng(seed), 60)
    assert _abdominal_both(mine, theirs)[0] == pytest.approx(
        _abdominal_both(mine, theirs)[1], abs=TOL
    )


def test_abdominal_edge_cases():
    rng = np.random.default_rng(7)
    y_true, y_pred = _abdominal_case(rng, 40, absent="kidney")  # no kidney_high
    mine, theirs = _abdominal_both(y_true, y_pred)
    assert mine == pytest.approx(theirs, abs=TOL)
    mine, theirs = _abdominal_both(y_true, np.ones_like(y_pred))  # all equal
    assert mine == pytest.approx(theirs, abs=TOL)
    healthy = np.zeros_like(y_true)
    healthy[:, [0, 2, 4, 7, 10]] = 1  # every patient healthy: any_injury all negative
    mine, theirs = _abdominal_both(healthy, y_pred)
    assert mine == pytest.approx(theirs, abs=TOL)
    groups, any_injury = _abdominal_structure()
    losses = group_losses(y_true, y_pred, groups, any_injury)
    assert list(losses) == ["bowel", "extravasation", "kidney", "liver", "spleen", "any_injury"]


def test_abdominal_missing_labels_are_left_out():
    rng = np.random.default_rng(8)
    y_true, y_pred = _abdominal_case(rng, 30)
    groups, any_injury = _abdominal_structure()
    with_missing = y_true.copy()
    with_missing[5, 4:7] = np.nan  # patient 5's kidney unknown
    kidney = grouped_log_loss(with_missing, y_pred, [groups[2]])
    assert kidney == pytest.approx(
        grouped_log_loss(np.delete(y_true, 5, 0), np.delete(y_pred, 5, 0), [groups[2]]), abs=TOL
    )
    # the patient still counts in any_injury, from its other organs
    assert np.isfinite(grouped_log_loss(with_missing, y_pred, groups, any_injury))


# --- Lumbar Spine 2024 -----------------------------------------------------------


def _lumbar_structure():
    member = {
        (c, lv): slice(3 * (5 * i + j), 3 * (5 * i + j) + 3)
        for i, c in enumerate(ref.LUMBAR_CONDITIONS)
        for j, lv in enumerate(ref.LUMBAR_LEVELS)
    }
    heads = {
        kind: tuple(s for (c, _), s in member.items() if kind in c)
        for kind in ("spinal", "foraminal", "subarticular")
    }
    groups = [SoftmaxGroup(kind, heads[kind], (1, 2, 4)) for kind in heads]
    any_severe = AnyOf(
        "any_severe_spinal",
        heads["spinal"],
        ((1, 2, 4),) * len(heads["spinal"]),
        event_class=2,
        normalised=False,
    )
    return groups, any_severe


def _lumbar_frames(y_true, y_pred):
    truth, pred = [], []
    for study in range(len(y_true)):
        for i, condition in enumerate(ref.LUMBAR_CONDITIONS):
            for j, level in enumerate(ref.LUMBAR_LEVELS):
                part = slice(3 * (5 * i + j), 3 * (5 * i + j) + 3)
                if np.isnan(y_true[study, part]).any():
                    continue  # missing: no solution row
                row_id = f"{4000 + study}_{condition}_{level}"
                onehot = y_true[study, part]
                truth.append([row_id, *onehot, 2 ** int(onehot.argmax())])
                pred.append([row_id, *y_pred[study, part]])
    solution = pd.DataFrame(truth, columns=["row_id", *ref.SEVERITIES, "sample_weight"])
    return solution, pd.DataFrame(pred, columns=["row_id", *ref.SEVERITIES])


def _lumbar_case(rng, studies: int, severe: bool = True):
    classes = rng.choice(3, size=(studies, 25), p=[0.7, 0.2, 0.1])
    if not severe:
        classes[classes == 2] = 1
    y_true = _one_hot(classes, 3).reshape(studies, 75)
    y_pred = _softmax(rng, studies * 25, 3).reshape(studies, 75)
    return y_true, y_pred


def _lumbar_both(y_true, y_pred):
    groups, any_severe = _lumbar_structure()
    return grouped_log_loss(y_true, y_pred, groups, any_severe), ref.lumbar(
        *_lumbar_frames(y_true, y_pred)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lumbar_matches_the_official_definition(seed):
    mine, theirs = _lumbar_both(*_lumbar_case(np.random.default_rng(seed), 30))
    assert mine == pytest.approx(theirs, abs=TOL)


def test_lumbar_edge_cases():
    rng = np.random.default_rng(11)
    y_true, y_pred = _lumbar_case(rng, 20, severe=False)  # no severe: any_severe all 0
    mine, theirs = _lumbar_both(y_true, y_pred)
    assert mine == pytest.approx(theirs, abs=TOL)
    mine, theirs = _lumbar_both(y_true, np.full_like(y_pred, 1 / 3))  # all equal
    assert mine == pytest.approx(theirs, abs=TOL)
    y_true, y_pred = _lumbar_case(rng, 20)
    y_true[rng.random((20, 25)).repeat(3, axis=1) < 0.2] = np.nan  # missing levels
    y_true[3, :15] = np.nan  # a study with no spinal label: left out of any_severe
    mine, theirs = _lumbar_both(y_true, y_pred)
    assert mine == pytest.approx(theirs, abs=TOL)


# --- Aneurysm 2025, ISIC 2024, balanced accuracy ---------------------------------

ANEURYSM_WEIGHTS = [1] * 13 + [13]


@pytest.mark.parametrize("seed", [0, 1])
def test_aneurysm_matches_the_official_definition(seed):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((80, 14)) < 0.15).astype(float)
    y_true[:3, :13] = 1  # every column has both classes
    y_true[:, 13] = y_true[:, :13].max(axis=1)
    y_pred = rng.random((80, 14)) + 0.3 * y_true
    assert weighted_column_auc(y_true, y_pred, ANEURYSM_WEIGHTS) == pytest.approx(
        ref.aneurysm(y_true, y_pred), abs=TOL
    )
    ties = np.round(y_pred, 1)  # tied scores: half credit, as sklearn gives it
    assert weighted_column_auc(y_true, ties, ANEURYSM_WEIGHTS) == pytest.approx(
        ref.aneurysm(y_true, ties), abs=TOL
    )


def test_aneurysm_edge_cases():
    import sklearn.metrics

    rng = np.random.default_rng(5)
    y_true = (rng.random((50, 14)) < 0.1).astype(float)
    y_true[:5, :13], y_true[5:10, :13] = 1, 0  # both classes in every column but one
    y_true[:, 13] = y_true[:, :13].max(axis=1)
    y_true[:, 2] = 0  # a location no series has: left out, the others renormalised
    y_pred = rng.random((50, 14))
    aucs = {
        k: sklearn.metrics.roc_auc_score(y_true[:, k], y_pred[:, k]) for k in range(14) if k != 2
    }
    expected = sum(aucs[k] * ANEURYSM_WEIGHTS[k] for k in aucs) / (sum(ANEURYSM_WEIGHTS) - 1)
    assert weighted_column_auc(y_true, y_pred, ANEURYSM_WEIGHTS) == pytest.approx(expected, abs=TOL)
    assert weighted_column_auc(y_true, np.zeros_like(y_pred), ANEURYSM_WEIGHTS) == pytest.approx(
        0.5
    )
    missing = y_true.copy()
    missing[:10, 0] = np.nan
    assert weighted_column_auc(missing, y_pred, ANEURYSM_WEIGHTS) != pytest.approx(
        weighted_column_auc(y_true, y_pred, ANEURYSM_WEIGHTS)
    )
    with pytest.raises(ValueError, match="every column"):
        weighted_column_auc(np.zeros((5, 14)), y_pred[:5], ANEURYSM_WEIGHTS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partial_auc_matches_the_isic_definition(seed):
    rng = np.random.default_rng(seed)
    y_true = (rng.random(500) < 0.05).astype(float)
    y_pred = rng.random(500) + 0.6 * y_true
    assert partial_auc(y_true, y_pred) == pytest.approx(
        ref.isic_partial_auc(y_true, y_pred), abs=TOL
    )
    ties = np.round(y_pred, 1)
    assert partial_auc(y_true, ties) == pytest.approx(ref.isic_partial_auc(y_true, ties), abs=TOL)
    for min_tpr in (0.5, 0.9):
        assert partial_auc(y_true, y_pred, min_tpr) == pytest.approx(
            ref.isic_partial_auc(y_true, y_pred, min_tpr), abs=TOL
        )


def test_partial_auc_edge_cases():
    y_true = np.array([0, 0, 1, 1, 0, 1, 0, 0], float)
    assert partial_auc(y_true, y_true) == pytest.approx(0.2)  # perfect: the whole strip
    assert partial_auc(y_true, 1 - y_true) == pytest.approx(0.0)
    equal = np.full(8, 0.3)  # the diagonal: a triangle 0.2 x 0.2 / 2
    assert (
        partial_auc(y_true, equal)
        == pytest.approx(0.02)
        == pytest.approx(ref.isic_partial_auc(y_true, equal), abs=TOL)
    )
    with pytest.raises(ValueError, match="single class"):
        partial_auc(np.zeros(8), equal)


def test_balanced_accuracy_matches_scikit_learn():
    import sklearn.metrics

    rng = np.random.default_rng(4)
    classes = rng.choice(4, size=200, p=[0.6, 0.25, 0.1, 0.05])
    probabilities = _softmax(rng, 200, 4) + _one_hot(classes, 4) * 0.3
    expected = sklearn.metrics.balanced_accuracy_score(classes, probabilities.argmax(axis=1))
    assert balanced_accuracy(_one_hot(classes, 4), probabilities) == pytest.approx(
        expected, abs=TOL
    )
    binary = (rng.random(100) < 0.2).astype(float)
    scores = rng.random(100)
    expected = sklearn.metrics.balanced_accuracy_score(binary, scores >= 0.5)
    assert balanced_accuracy(binary, scores) == pytest.approx(expected, abs=TOL)
    # a class absent from the truth is not averaged in (sklearn warns and does the same)
    absent = _one_hot(np.where(classes == 3, 0, classes), 4)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = sklearn.metrics.balanced_accuracy_score(
            absent.argmax(1), probabilities.argmax(1)
        )
    assert balanced_accuracy(absent, probabilities) == pytest.approx(expected, abs=TOL)
