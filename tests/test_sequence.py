"""The sequence stage: series in z order, batches of whole series, the model
(untrained = the CNN), training per fold without leakage, resuming, and
prediction through both stages, on the small synthetic competition."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.data.folds import read_folds
from competition.errors import KitError
from competition.sequence.series import (
    SeriesBatches,
    augmented,
    predict_series,
    series_rows,
    slice_inputs,
)

from conftest import TRAINED_WITH, small_config
from helpers import REPO

SEQ = ("sequence.epochs=2", "sequence.units=8", "sequence.batch_size=4")


def test_series_rows_follow_z_not_ids():
    headers = pd.DataFrame(
        {"series_id": ["s1", "s1", "s1", "s2", ""], "z": [30.0, 10.0, 20.0, 5.0, 1.0]},
        index=["a", "b", "c", "d", "e"],
    )
    found = series_rows(["a", "b", "c", "d", "e", "unknown"], headers)
    as_ids = sorted([["a", "b", "c", "d", "e", "unknown"][r] for r in rows] for rows in found)
    assert as_ids == [["b", "c", "a"], ["d"], ["e"], ["unknown"]]


def test_slice_inputs_are_embedding_differences_and_logits():
    e = np.array([[0.0, 1.0], [2.0, 3.0], [5.0, 5.0]], dtype=np.float16)
    logits = np.array([[9.0], [8.0], [7.0]], dtype=np.float32)
    x = slice_inputs(e, logits)
    assert x.shape == (3, 7)
    np.testing.assert_array_equal(x[:, 2:4], [[0, 0], [2, 2], [3, 2]])  # minus the previous
    np.testing.assert_array_equal(x[:, 4:6], [[-2, -2], [-3, -2], [0, 0]])  # minus the next
    np.testing.assert_array_equal(x[:, 6], [9, 8, 7])


def test_augmentation_reverses_and_drops_every_other_slice():
    cfg = load_config(REPO / "configs" / "small.yaml").sequence
    rows = np.arange(10)
    seen = {tuple(augmented(rows, np.random.default_rng(s), cfg)) for s in range(200)}
    assert tuple(rows) in seen and tuple(rows[::-1]) in seen
    assert tuple(rows[::2]) in seen or tuple(rows[1::2]) in seen
    assert all(len(s) in (5, 10) for s in seen)


def test_batches_pad_whole_series_and_weigh_padding_zero():
    cfg = load_config(REPO / "configs" / "small.yaml", ["sequence.batch_size=2"]).sequence
    series = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5])]
    emb = np.arange(12, dtype=np.float16).reshape(6, 2) + 1
    logits = np.ones((6, 1), np.float32)
    labels = np.arange(6, dtype=np.float32)[:, None]
    batches = SeriesBatches(series, emb, logits, labels, sequence_config=cfg)
    assert len(batches) == 2
    x, y, w = batches[0]
    assert x.shape == (2, 3, 7) and y.shape == (2, 3, 1)
    np.testing.assert_array_equal(w, [[1, 1, 1], [1, 0, 0]])
    assert batches[1][0].shape == (1, 3, 7)  # every batch as long as the longest series
    assert not x[1, 1:].any() and x[1, 0].any()  # padding is zeros, a slice never is


def test_untrained_sequence_model_is_the_cnn_and_padding_does_not_count():
    """The correction starts at zero: the model's first answer is stage 1's."""
    import keras

    from competition.sequence.network import build_sequence_model
    from competition.training.losses import compile_args

    config = load_config(REPO / "configs" / "small.yaml", list(SEQ))
    outputs = len(config.task.outputs)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(7, 4)).astype(np.float16)
    logits = rng.normal(size=(7, outputs)).astype(np.float32)
    labels = (rng.random((7, outputs)) < 0.3).astype(np.float32)
    batches = SeriesBatches(
        [np.arange(5), np.arange(5, 7)], emb, logits, labels, sequence_config=config.sequence
    )
    model = build_sequence_model(batches.feature_dim, config.task, config.sequence)
    found = predict_series(model, batches, 7)
    np.testing.assert_allclose(found, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    x, y, w = batches[0]
    loss = compile_args(config.task)["loss"]
    padded_y = y.copy()
    padded_y[1, 2:] = 1 - padded_y[1, 2:]  # labels under the padding changed
    a = float(loss(y, model(x), sample_weight=w))
    b = float(loss(padded_y, model(x), sample_weight=w))
    assert a == pytest.approx(b)
    assert keras.ops.convert_to_numpy(model(x)).shape == y.shape


@pytest.fixture(scope="module")
def sequenced(small_competition, trained, tmp_path_factory):
    """The shared trained folds plus fold 0's sequence stage."""
    from competition.pipeline.train_seq import train_sequence_folds

    runs = tmp_path_factory.mktemp("seq") / "runs"
    shutil.copytree(trained, runs)
    config = small_config(small_competition.data.root, f"runs_dir={runs}", *TRAINED_WITH, *SEQ)
    (metrics,) = train_sequence_folds(config, [0])
    return config, metrics


def test_sequence_stage_trains_scores_and_records_what_it_saw(sequenced):
    config, metrics = sequenced
    out = config.runs.fold(0) / "sequence"
    for name in ("best.keras", "history.csv", "oof.csv", "metrics.json", "train_ids.csv"):
        assert (out / name).is_file(), name
    assert not (out / "backup").exists()
    assert metrics["stage"] == 2 and np.isfinite(metrics["score"])
    assert (
        metrics["stage1_score"]
        == json.loads((config.runs.fold(0) / "metrics.json").read_text())["score"]
    )
    features = np.load(config.runs.fold(0) / "features" / "train.npz")
    assert features["embeddings"].dtype == np.float16
    assert len(pd.read_csv(out / "history.csv")) == 2


def test_no_validation_image_is_in_any_training_set_of_its_fold(sequenced):
    config, _ = sequenced
    folds = read_folds(config.layout)
    stage1_train = set(folds.loc[folds["fold"] != 0, "image_id"])
    stage2_train = set(pd.read_csv(config.runs.fold(0) / "sequence" / "train_ids.csv")["image_id"])
    scored = set(pd.read_csv(config.runs.fold(0) / "sequence" / "oof.csv")["image_id"])
    assert scored == set(folds.loc[folds["fold"] == 0, "image_id"])
    assert stage2_train <= stage1_train
    assert not scored & stage1_train and not scored & stage2_train


def test_leak_guard_refuses_overlap():
    from competition.pipeline.train_seq import check_no_leak

    with pytest.raises(KitError, match="also training images"):
        check_no_leak(["a", "b"], ["b", "c"], fold=0)


def test_finished_sequence_stage_is_reused_and_settings_change_is_refused(sequenced):
    from competition.pipeline.train_seq import train_sequence_folds

    config, metrics = sequenced
    assert train_sequence_folds(config, [0])[0] == metrics
    changed = small_config(
        config.data.root, f"runs_dir={config.runs_dir}", *TRAINED_WITH, *SEQ, "sequence.units=4"
    )
    with pytest.raises(KitError, match="units"):
        train_sequence_folds(changed, [0])


def test_sequence_stage_resumes_from_its_backup(sequenced, tmp_path, monkeypatch, capsys):
    """Stopped right after epoch 1's backup, the next run starts at epoch 2."""
    from competition.pipeline import train_seq as seq
    from competition.training.callbacks import EpochBackup

    config, _ = sequenced
    runs = tmp_path / "runs"
    shutil.copytree(config.runs_dir, runs)
    shutil.rmtree(runs / config.experiment / "fold0" / "sequence")
    config = small_config(config.data.root, f"runs_dir={runs}", *TRAINED_WITH, *SEQ)
    save = EpochBackup.on_epoch_end

    def stop_after_first(self, epoch, logs=None):
        save(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochBackup, "on_epoch_end", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        seq.train_sequence_folds(config, [0])
    out = config.runs.fold(0) / "sequence"
    assert (out / "backup" / "epoch-0001.weights.h5").is_file()
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(EpochBackup, "on_epoch_end", save)
    metrics = seq.train_sequence_folds(config, [0])[0]
    assert "Resuming fold 0's sequence stage at epoch 2" in capsys.readouterr().out
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [0, 1]
    assert np.isfinite(metrics["score"])


def test_predict_uses_the_sequence_stage_and_writes_a_valid_submission(sequenced, tmp_path):
    from competition.inference.submission import validate_file
    from competition.pipeline.predict import predict_and_submit

    config, _ = sequenced
    runs = tmp_path / "runs"
    shutil.copytree(config.runs_dir, runs)
    extra = (f"runs_dir={runs}", *TRAINED_WITH, *SEQ, f"predict.submissions_dir={tmp_path}/sub")
    two = small_config(config.data.root, *extra, "predict.folds=[0]")
    summary = predict_and_submit(two)
    assert summary["stage"] == 2 and summary["test_score"]["score"] > 0
    assert (two.runs.fold(0) / "features" / "test.npz").is_file()
    problems, _ = validate_file(two.task, summary["submission"], two.layout.sample_submission)
    assert problems == []
    one = small_config(config.data.root, *extra, "predict.folds=[0]", "predict.stage=1")
    assert predict_and_submit(one)["stage"] == 1
    with pytest.raises(Exception, match="no trained sequence stage"):
        predict_and_submit(small_config(config.data.root, *extra, "predict.stage=2"))


def test_report_shows_both_stages_side_by_side(sequenced):
    from competition.evaluation.cv import cv_report, markdown

    config, metrics = sequenced
    report = cv_report(config.task, config.runs)
    pair = report["stages"]["folds"]["0"]
    assert pair["stage2"]["score"] == pytest.approx(metrics["score"])
    assert pair["stage1"]["score"] == pytest.approx(metrics["stage1_score"])
    assert set(report["stages"]["overall"]["stage2"]["per_output"]) == set(config.task.outputs)
    text = markdown(report)
    assert "Stage 1 (CNN) and stage 2 (sequence model)" in text
    assert "| any |" in text


def test_sequence_stage_is_refused_for_images_without_series(presets):
    from competition.pipeline.train_seq import train_sequence_folds

    from conftest import preset_config

    root, runs = presets("aptos_2019")
    config = preset_config("aptos_2019", root, f"runs_dir={runs}")
    with pytest.raises(KitError, match="do not form series"):
        train_sequence_folds(config, [0])
