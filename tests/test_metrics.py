from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from competition.config import load_config
from competition.evaluation.metrics import METRICS, mean_column_auc, roc_auc, weighted_log_loss
from competition.evaluation.scores import score
from competition.training.losses import HeadAUC, TaskLoss, head_specs, metric_twin

from helpers import REPO

RSNA = load_config(REPO / "configs" / "rsna_ich.yaml").task
WEIGHTS = RSNA.metric_weights


def random_case(seed=0, n=500):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 6)) < [0.01, 0.05, 0.04, 0.05, 0.06, 0.14]).astype(np.float32)
    y[:3] = 1  # every column has both classes
    p = np.clip(rng.beta(0.5, 3, (n, 6)), 0, 1)
    p[0, 0] = 0.0  # clipping matters
    return y, p


def test_rsna_metric_weights_come_from_the_preset():
    assert WEIGHTS == [1, 1, 1, 1, 1, 2] and RSNA.metric.name == "weighted_log_loss"


def test_matches_sklearn_per_column_weighted_average():
    for seed in range(5):
        y, p = random_case(seed)
        expected = np.average(
            [log_loss(y[:, k], np.clip(p[:, k], 1e-7, 1 - 1e-7), labels=[0, 1]) for k in range(6)],
            weights=WEIGHTS,
        )
        assert abs(weighted_log_loss(y, p, WEIGHTS) - expected) < 1e-6
        assert abs(RSNA.score(y, p) - expected) < 1e-6


def test_keras_loss_and_metric_equal_the_numpy_metric():
    y, p = random_case(1, n=64)
    metric = metric_twin(RSNA)
    assert metric.name == "weighted_log_loss"
    for start in range(0, 64, 16):  # accumulated over batches
        metric.update_state(y[start : start + 16], p[start : start + 16])
    assert abs(float(metric.result()) - weighted_log_loss(y, p, WEIGHTS)) < 1e-5
    loss = TaskLoss(head_specs(RSNA))
    assert abs(float(loss(y, p)) - weighted_log_loss(y, p, WEIGHTS)) < 1e-5


def test_perfect_and_prevalence_predictions():
    y, _ = random_case(2)
    assert weighted_log_loss(y, y, WEIGHTS) < 1e-5
    baseline = weighted_log_loss(y, np.broadcast_to(y.mean(0), y.shape), WEIGHTS)
    assert weighted_log_loss(y, np.full_like(y, 0.5), WEIGHTS) > baseline
    found = score(RSNA, y, y)
    assert found["score"] < 1e-5 and abs(found["baseline_score"] - baseline) < 1e-9


def test_auc_metrics_equal_sklearn_and_refuse_a_single_class():
    y, p = random_case(3)
    assert roc_auc(y[:, [5]], p[:, [5]]) == pytest.approx(
        roc_auc_score(y[:, 5], p[:, 5]), abs=1e-12
    )
    expected = np.mean([roc_auc_score(y[:, k], p[:, k]) for k in range(6)])
    assert mean_column_auc(y, p) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"undefined for column\(s\) \[0\]"):
        mean_column_auc(np.array([[0, 0], [0, 1], [0, 0], [0, 1]]), np.full((4, 2), 0.5))


def test_keras_auc_twin_is_close_to_sklearn():
    y, p = random_case(4, n=2000)
    twin = HeadAUC(5, 6, name="roc_auc")
    twin.update_state(y, p)
    assert abs(float(twin.result()) - roc_auc_score(y[:, 5], p[:, 5])) < 0.01


def test_registry_says_direction_and_kinds():
    assert METRICS["weighted_log_loss"].lower_is_better
    assert not METRICS["roc_auc"].lower_is_better and METRICS["roc_auc"].kinds == {"binary"}


# --- the other presets' metrics, against independent computations ----------------------------


def reference_pf1(labels, predictions) -> float:
    """The competition's own loop (probabilistic F-beta with beta 1)."""
    ctp = cfp = positives = 0.0
    for label, prediction in zip(labels, predictions, strict=True):
        prediction = min(max(prediction, 0), 1)
        if label:
            positives += 1
            ctp += prediction
        else:
            cfp += prediction
    precision, recall = ctp / (ctp + cfp), ctp / positives
    return 2 * precision * recall / (precision + recall) if precision > 0 and recall > 0 else 0


def test_pf1_equals_the_competitions_loop_with_clipping_and_ties():
    from competition.evaluation.metrics import pf1

    rng = np.random.default_rng(0)
    for seed in range(5):
        y = (np.random.default_rng(seed).random(300) < 0.05).astype(float)
        y[:2] = 1
        p = np.round(rng.uniform(-0.2, 1.2, 300), 1)  # ties, and values outside [0, 1]
        assert abs(pf1(y[:, None], p[:, None]) - reference_pf1(y, p)) < 1e-9
    assert pf1(np.array([[1], [0]]), np.array([[0.0], [0.0]])) == 0.0  # documented: 0
    with pytest.raises(ValueError, match="undefined without a positive label"):
        pf1(np.zeros((4, 1)), np.full((4, 1), 0.5))


def test_quadratic_kappa_equals_sklearn_on_classes_and_cut_regression_values():
    from sklearn.metrics import cohen_kappa_score

    from competition.evaluation.metrics import quadratic_kappa

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, 400)
    values = np.clip(truth + rng.normal(0, 0.8, 400), -0.5, 4.7)
    cuts = [0.7, 1.4, 2.6, 3.3]
    predicted = np.searchsorted(cuts, values)
    expected = cohen_kappa_score(truth, predicted, weights="quadratic")
    assert abs(quadratic_kappa(truth[:, None], values[:, None], thresholds=cuts) - expected) < 1e-9
    nearest = np.maximum(np.rint(values), 0).astype(int)  # without cuts: the nearest class
    assert (
        abs(
            quadratic_kappa(truth[:, None], values[:, None])
            - cohen_kappa_score(truth, nearest, weights="quadratic")
        )
        < 1e-9
    )
    onehot, probabilities = np.eye(5)[truth], np.eye(5)[predicted] * 0.6 + 0.08
    assert abs(quadratic_kappa(onehot, probabilities) - expected) < 1e-9  # multiclass: argmax
    with pytest.raises(ValueError, match="all the same class"):
        quadratic_kappa(np.full((5, 1), 2.0), np.full((5, 1), 2.1))


def test_auc_ties_and_log_loss_clipping_equal_sklearn():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 0])[:, None]
    p = np.array([0.3, 0.3, 0.3, 0.9, 0.1, 0.9, 1.0, 0.0])[:, None]  # ties; 0 and 1 clipped
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]), abs=1e-12)
    clipped = np.clip(p[:, 0], 1e-7, 1 - 1e-7)
    assert weighted_log_loss(y, p) == pytest.approx(log_loss(y[:, 0], clipped), abs=1e-9)


def test_a_task_scores_an_ordinal_head_with_its_cuts_and_groups_rows():
    from competition.evaluation.scores import score

    aptos = load_config(REPO / "configs" / "aptos_2019.yaml").task
    truth = np.array([[0.0], [1], [2], [3], [4], [2]])
    values = np.array([[0.2], [1.4], [1.6], [3.2], [3.9], [2.4]])
    default = score(aptos, truth, values)
    assert default["metric"] == "quadratic_kappa" and default["lower_is_better"] is False
    tuned = score(aptos, truth, values, thresholds=[0.5, 1.5, 2.5, 3.5])
    assert tuned["score"] == default["score"]  # the default cuts are the half-way ones
    breast = load_config(REPO / "configs" / "rsna_breast_2023.yaml").task
    y = np.array([[1.0], [1], [0], [0]])
    p = np.array([[0.9], [0.1], [0.2], [0.4]])
    grouped = score(breast, y, p, groups=np.array(["a_L", "a_L", "a_R", "a_R"]))
    assert grouped["groups"] == 2  # one row per breast: labels max, predictions mean
    assert grouped["score"] == pytest.approx(reference_pf1([1, 0], [0.5, 0.3]), abs=1e-12)


def test_tuned_cuts_score_at_least_the_default_ones_and_average_over_folds():
    from competition.evaluation import thresholds
    from competition.evaluation.metrics import quadratic_kappa

    rng = np.random.default_rng(2)
    truth = rng.integers(0, 5, 300).astype(float)
    values = truth * 0.7 + rng.normal(
        0.3, 0.4, 300
    )  # shrunk towards the middle, as regressions are
    cuts = thresholds.tune(truth, values, 5)
    assert len(cuts) == 4 and all(np.diff(cuts) > 0)
    default = quadratic_kappa(truth[:, None], values[:, None], thresholds=[0.5, 1.5, 2.5, 3.5])
    assert quadratic_kappa(truth[:, None], values[:, None], thresholds=cuts) > default + 0.01
    assert thresholds.mean_cuts([{"grade": [1, 2]}, {"grade": [3, 4]}, {}]) == {"grade": [2.0, 3.0]}
