"""Heads above the image: groups of softmax heads (one-hot columns, or a
softmax per column of text classes), weights that depend on the true label,
missing labels masked, and the whole-task metrics, on hand-made label tables
in the real layouts of Abdominal Trauma 2023, Lumbar Spine 2024 and Cervical
Spine 2022: read, encoded, scored against the second implementations, their
Keras twins streamed, the loss and a model's heads."""

from __future__ import annotations

from pathlib import Path

import metric_references as ref
import numpy as np
import pandas as pd
import pytest
import yaml

from competition.config import ConfigError, load_config
from competition.data.labels import read_labels

from helpers import REPO

ORGANS = ref.ABDOMINAL_BINARY + ref.ABDOMINAL_TRIPLE
SEVERITY_TEXT = ["Normal/Mild", "Moderate", "Severe"]
LUMBAR_HEADS = [
    "spinal",
    "left_foraminal",
    "right_foraminal",
    "left_subarticular",
    "right_subarticular",
]


def _config(tmp_path: Path, task: dict, name: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": str(REPO / "configs" / "base.yaml"), "task": task}))
    return load_config(path)


def abdominal_task(extra: dict | None = None) -> dict:
    heads = []
    for organ in ORGANS:
        weights = {"bowel": [1, 2], "extravasation": [1, 6]}.get(organ, [1, 2, 4])
        heads.append(
            {
                "name": organ,
                "kind": "multiclass",
                "columns": ref.abdominal_columns(organ),
                "loss_weights": weights,
            }
        )
    return {
        "name": "abdominal",
        "labels": {"csv": "train.csv", "format": "wide", "id_column": "patient_id"},
        "images": {"path": "{split_dir}/{patient_id}.dcm"},
        "stratify": "any_injury",
        "heads": heads,
        "metric": {
            "name": "grouped_log_loss",
            "any_of": {"name": "any_injury", "heads": ORGANS, "absent_class": 0, "weights": [1, 6]},
        },
        "submission": {"id_column": "patient_id"},
        **(extra or {}),
    }


def lumbar_task() -> dict:
    heads = []
    for name, condition in zip(LUMBAR_HEADS, ref.LUMBAR_CONDITIONS, strict=True):
        heads.append(
            {
                "name": name,
                "kind": "multiclass",
                "classes": SEVERITY_TEXT,
                "columns": [f"{condition}_{level}" for level in ref.LUMBAR_LEVELS],
                "loss_weights": [1, 2, 4],
            }
        )
    return {
        "name": "lumbar",
        "labels": {
            "csv": "train.csv",
            "format": "wide",
            "id_column": "study_id",
            "missing": "mask",
        },
        "images": {"path": "{split_dir}/{study_id}.dcm"},
        "stratify": "spinal_canal_stenosis_l4_l5",
        "heads": heads,
        "metric": {
            "name": "grouped_log_loss",
            "groups": {
                "spinal": ["spinal"],
                "foraminal": LUMBAR_HEADS[1:3],
                "subarticular": LUMBAR_HEADS[3:],
            },
            "any_of": {
                "name": "any_severe_spinal",
                "heads": ["spinal"],
                "event_class": 2,
                "normalised": False,
            },
        },
        "submission": {"id_column": "study_id"},
    }


def cervical_task() -> dict:
    return {
        "name": "cervical",
        "labels": {"csv": "train.csv", "format": "wide", "id_column": "StudyInstanceUID"},
        "images": {"path": "{split_dir}/{StudyInstanceUID}.dcm"},
        "stratify": "patient_overall",
        "heads": [
            {
                "name": "fracture",
                "kind": "multilabel",
                "columns": ref.CERVICAL,
                "loss_weights": [7] + [1] * 7,
                "positive_weights": [14] + [2] * 7,
            }
        ],
        "metric": {"name": "label_weighted_log_loss"},
        "submission": {"id_column": "StudyInstanceUID"},
    }


# --- hand-made label tables in the real layouts ----------------------------------------


def abdominal_csv(path: Path, rng: np.random.Generator, patients: int = 24) -> pd.DataFrame:
    """train.csv as Kaggle ships it: patient_id, the organs' one-hot columns, any_injury."""
    frame = pd.DataFrame({"patient_id": [str(10000 + 7 * i) for i in range(patients)]})
    for organ in ORGANS:
        columns = ref.abdominal_columns(organ)
        shares = [0.6] + [0.4 / (len(columns) - 1)] * (len(columns) - 1)
        classes = rng.choice(len(columns), size=patients, p=shares)
        for k, column in enumerate(columns):
            frame[column] = (classes == k).astype(int)
    frame["any_injury"] = 1 - frame[[f"{o}_healthy" for o in ORGANS]].min(axis=1)
    frame.to_csv(path, index=False)
    return frame


def lumbar_csv(path: Path, rng: np.random.Generator, studies: int = 20) -> pd.DataFrame:
    """train.csv as Kaggle ships it: study_id and 25 severities as text, some empty."""
    frame = pd.DataFrame({"study_id": [str(4000000 + 13 * i) for i in range(studies)]})
    for condition in ref.LUMBAR_CONDITIONS:
        for level in ref.LUMBAR_LEVELS:
            values = rng.choice(SEVERITY_TEXT, size=studies, p=[0.7, 0.2, 0.1]).astype(object)
            values[rng.random(studies) < 0.1] = ""
            frame[f"{condition}_{level}"] = values
    frame.loc[2, [c for c in frame if c.startswith("spinal")]] = ""  # no spinal label at all
    frame.to_csv(path, index=False)
    return frame


def _softmaxes(rng, rows: int, widths: list[int]) -> np.ndarray:
    parts = []
    for width in widths:
        logits = rng.normal(size=(rows, width)) * 1.5
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        parts.append(e / e.sum(axis=1, keepdims=True))
    return np.concatenate(parts, axis=1)


def _lumbar_reference(frame: pd.DataFrame, y_pred: np.ndarray) -> float:
    truth, pred = [], []
    for s, study in enumerate(frame["study_id"]):
        for i, condition in enumerate(ref.LUMBAR_CONDITIONS):
            for j, level in enumerate(ref.LUMBAR_LEVELS):
                value = frame.at[s, f"{condition}_{level}"]
                if not value:
                    continue
                k = SEVERITY_TEXT.index(value)
                row_id = f"{study}_{condition}_{level}"
                truth.append([row_id, *np.eye(3)[k], 2**k])
                pred.append([row_id, *y_pred[s, 3 * (5 * i + j) : 3 * (5 * i + j) + 3]])
    solution = pd.DataFrame(truth, columns=["row_id", *ref.SEVERITIES, "sample_weight"])
    return ref.lumbar(solution, pd.DataFrame(pred, columns=["row_id", *ref.SEVERITIES]))


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    rng = np.random.default_rng(0)
    found = {}
    for name, task, write in (
        ("abdominal", abdominal_task(), abdominal_csv),
        ("lumbar", lumbar_task(), lumbar_csv),
    ):
        config = _config(root, task, name)
        frame = write(root / f"{name}.csv", rng)
        labels = read_labels(config.task, root / f"{name}.csv")
        found[name] = (config.task, frame, labels)
    return found


def test_abdominal_table_encodes_and_scores_as_the_official_metric(tasks):
    task, frame, labels = tasks["abdominal"]
    assert [h.outputs for h in task.heads][2] == ref.abdominal_columns("kidney")
    targets = task.targets(labels)
    expected = frame[[c for o in ORGANS for c in ref.abdominal_columns(o)]].to_numpy(np.float32)
    np.testing.assert_array_equal(targets, expected)
    rng = np.random.default_rng(1)
    y_pred = _softmaxes(rng, len(frame), [2, 2, 3, 3, 3])
    columns = [c for o in ORGANS for c in ref.abdominal_columns(o)]
    theirs = ref.abdominal(
        ref.abdominal_solution(frame[columns]), pd.DataFrame(y_pred, columns=columns)
    )
    assert task.score(targets, y_pred) == pytest.approx(theirs, abs=1e-6)


def test_lumbar_text_classes_and_missing_labels_score_as_the_official_metric(tasks):
    task, frame, labels = tasks["lumbar"]
    targets = task.targets(labels)
    assert targets.shape == (len(frame), 75)
    assert np.isnan(targets[2, :15]).all()  # study 2 has no spinal label
    assert np.isnan(targets).any(axis=1).sum() > 5
    known = ~np.isnan(targets)
    first = frame.columns[1]
    row = int(np.flatnonzero(frame[first] == "Severe")[0])
    np.testing.assert_array_equal(targets[row, :3], [0, 0, 1])
    y_pred = _softmaxes(np.random.default_rng(2), len(frame), [3] * 25)
    assert task.score(targets, y_pred) == pytest.approx(_lumbar_reference(frame, y_pred), abs=1e-6)
    assert known.sum() == 3 * (frame.iloc[:, 1:] != "").to_numpy().sum()


def test_cervical_label_weights_score_as_the_official_metric(tmp_path):
    config = _config(tmp_path, cervical_task(), "cervical")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"StudyInstanceUID": [f"1.2.826.0.1.{i}" for i in range(30)]})
    vertebrae = (rng.random((30, 7)) < 0.15).astype(int)
    frame["patient_overall"] = vertebrae.max(axis=1)
    for k in range(7):
        frame[f"C{k + 1}"] = vertebrae[:, k]
    frame.to_csv(tmp_path / "train.csv", index=False)
    labels = read_labels(config.task, tmp_path / "train.csv")
    targets = config.task.targets(labels)
    y_pred = rng.uniform(0.02, 0.98, size=targets.shape)
    rows = [
        (f"{s}_{c}", targets[i, k], y_pred[i, k])
        for i, s in enumerate(labels.index)
        for k, c in enumerate(ref.CERVICAL)
    ]
    solution = pd.DataFrame([(r, t) for r, t, _ in rows], columns=["row_id", "fractured"])
    submission = pd.DataFrame([(r, p) for r, _, p in rows], columns=["row_id", "fractured"])
    assert config.task.score(targets, y_pred) == pytest.approx(
        ref.cervical(solution, submission), abs=1e-6
    )


# --- the Keras side: twins, loss, heads ---------------------------------------------------


def _streamed(twin, targets, y_pred) -> float:
    half = len(targets) // 2
    for part in (slice(0, half), slice(half, None)):
        twin.update_state(targets[part].astype(np.float32), y_pred[part].astype(np.float32))
    return float(twin.result())


def test_the_keras_twins_stream_the_grouped_metrics(tasks):
    from competition.training.losses import metric_twin

    for name, widths in (("abdominal", [2, 2, 3, 3, 3]), ("lumbar", [3] * 25)):
        task, frame, labels = tasks[name]
        targets = task.targets(labels)
        y_pred = _softmaxes(np.random.default_rng(4), len(frame), widths)
        twin = metric_twin(task)
        assert twin.name == "grouped_log_loss"
        assert _streamed(twin, targets, y_pred) == pytest.approx(
            task.score(targets, y_pred), abs=1e-5
        )


def test_the_loss_masks_missing_labels_and_weighs_by_the_true_class(tasks):
    import keras

    from competition.training.losses import TaskLoss, head_specs

    task, frame, labels = tasks["lumbar"]
    targets = task.targets(labels).astype(np.float32)
    y_pred = _softmaxes(np.random.default_rng(5), len(frame), [3] * 25).astype(np.float32)
    loss = TaskLoss(head_specs(task), reduction=None)
    per_study = keras.ops.convert_to_numpy(loss(targets, y_pred))
    assert np.isfinite(per_study).all()
    # by hand: per head, the mean over its levels of -log p(true) x the true class's weight
    expected = np.zeros(len(frame))
    for h in range(5):
        terms = []
        for j in range(5):
            part = slice(3 * (5 * h + j), 3 * (5 * h + j) + 3)
            truth = np.nan_to_num(targets[:, part])
            p = np.clip(y_pred[:, part], 1e-7, 1)
            terms.append(-(truth * np.log(p)).sum(1) * (truth * [1, 2, 4]).sum(1))
        expected += np.mean(terms, axis=0)
    np.testing.assert_allclose(per_study, expected, rtol=1e-5)


def test_a_model_with_a_softmax_per_column_trains_on_masked_labels(tasks, tmp_path):
    import keras

    from competition.training.losses import compile_args
    from competition.training.model import build_model
    from competition.training.settings import ModelConfig

    task, frame, labels = tasks["lumbar"]
    targets = task.targets(labels).astype(np.float32)
    model = build_model(ModelConfig(backbone="tiny_cnn", weights=None), (32, 32, 3), task)
    model.compile(optimizer="adam", **compile_args(task))
    images = np.random.default_rng(6).random((len(frame), 32, 32, 3)).astype(np.float32)
    history = model.fit(images, targets, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(history.history["grouped_log_loss"]).all()
    out = model.predict(images, verbose=0)
    np.testing.assert_allclose(out.reshape(len(frame), 25, 3).sum(-1), 1.0, atol=1e-5)
    saved = tmp_path / "lumbar_head.keras"
    model.save(saved)
    reloaded = keras.models.load_model(saved, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), out, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "heads": [
                    {
                        "name": "a",
                        "kind": "multiclass",
                        "columns": ["x", "y"],
                        "positive_weights": [2],
                    }
                ]
            },
            "'task.heads[0].positive_weights' are only for sigmoid heads",
        ),
        (
            {"heads": [{"name": "a", "kind": "multiclass", "columns": ["x"]}]},
            "'task.heads[0].classes' of a multiclass head must list 2 or more class values",
        ),
        (
            {"metric": {"name": "grouped_log_loss", "any_of": {"name": "x", "heads": ["kidney"]}}},
            "'task.metric.any_of' needs one of absent_class or event_class",
        ),
        (
            {"metric": {"name": "grouped_log_loss", "groups": {"g": ["kidney", "bowel"]}}},
            "'task.metric.groups.g' must name heads with the same classes",
        ),
        (
            {"metric": {"name": "grouped_log_loss", "groups": {"g": ["nothing"]}}},
            "'task.metric.groups.g' must name multiclass heads",
        ),
        (
            {"metric": {"name": "log_loss", "groups": {"g": ["kidney"]}}},
            "are for grouped_log_loss, not log_loss",
        ),
    ],
)
def test_a_grouped_spec_that_does_not_fit_names_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, abdominal_task(change), "bad")
    assert message in str(info.value)


def test_a_lumbar_submission_has_a_row_per_study_and_level_and_a_column_per_class(tasks, tmp_path):
    """row_id = <study>_<condition>_<level>, then normal_mild, moderate,
    severe: each row the softmax of its label column, in class order."""
    from competition.inference import submission as sub

    lumbar = lumbar_task()
    lumbar["labels"]["id_pattern"] = r"(?P<image_id>[0-9]+)_(?P<label>[a-z_0-9]+)"
    lumbar["submission"] = {"layout": "long", "id_column": "row_id",
                            "value_columns": ["normal_mild", "moderate", "severe"]}  # fmt: skip
    task = _config(tmp_path, lumbar, "lumbar_submission").task
    studies = ["4003", "4016"]
    row_ids = [f"{s}_{c}" for s in studies for h in task.heads for c in h.columns]
    sample_path = tmp_path / "sample_submission.csv"
    pd.DataFrame({"row_id": row_ids, "normal_mild": 1 / 3, "moderate": 1 / 3,
                  "severe": 1 / 3}).to_csv(sample_path, index=False)  # fmt: skip
    outputs = _softmaxes(np.random.default_rng(3), len(studies), [3] * 25)
    values = sub.decode(task, outputs, studies)
    built = sub.build_submission(task, sub.read_sample(task, sample_path), values)
    assert built.columns.tolist() == ["row_id", "normal_mild", "moderate", "severe"]
    assert built.row_id.tolist() == row_ids
    for s in range(len(studies)):
        for j in range(25):  # label j of study s: outputs 3j..3j+2, as the model made them
            got = built.iloc[25 * s + j, 1:].to_numpy(np.float64)
            np.testing.assert_allclose(got, outputs[s, 3 * j : 3 * j + 3])
    path = tmp_path / "submission.csv"
    built.to_csv(path, index=False)
    assert sub.validate_file(task, path, sample_path) == ([], 50)
    built.loc[0, "moderate"] = 1.5
    built.to_csv(path, index=False)
    problems, _ = sub.validate_file(task, path, sample_path)
    assert len(problems) == 1 and "values of moderate" in problems[0]
    wrong = {**lumbar, "submission": {**lumbar["submission"], "value_columns": ["a", "b"]}}
    with pytest.raises(ConfigError, match="head 'spinal' must be multiclass with 2 classes"):
        _config(tmp_path, wrong, "wrong")
