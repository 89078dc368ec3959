"""Blends of experiments on their out-of-fold predictions: the weight
search, rank averaging, the metric's post-processing, the honest CV; the
out-of-fold store and its refusals; make blend end to end on two trained
experiments of the small synthetic competition."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.errors import KitError
from competition.layout import RunLayout
from competition.stacking import store
from competition.stacking.blend import Blender, honest_cv

from conftest import TRAINED_WITH, small_config
from helpers import REPO, cli


def _task(preset: str):
    return load_config(REPO / "configs" / f"{preset}.yaml").task


def _two_views(rng, truth, noise=1.2):
    """Two predictors of `truth`, each with its own noise (a blend averages it out)."""
    logit = (truth * 2 - 1) * 1.5
    return np.stack([1 / (1 + np.exp(-(logit + rng.normal(0, noise, truth.shape)))) for _ in "ab"])


def test_blend_of_two_noisy_views_beats_each_on_the_honest_cv():
    task = _task("rsna_ich")  # weighted log loss over six sigmoid outputs
    rng = np.random.default_rng(0)
    truth = (rng.random((1500, 6)) < 0.2).astype(float)
    stack = _two_views(rng, truth)
    stack[1] = stack[1] ** 1.6  # the second one badly calibrated
    folds = np.arange(1500) % 5
    blender = Blender(task)
    assert not blender.rank
    fitted = blender.fit(truth, stack)
    assert (fitted.weights >= 0).all() and fitted.weights.sum() == pytest.approx(1)
    assert fitted.post["kind"] == "temperature"
    honest = honest_cv(blender, truth, stack, folds)["score"]
    optimistic = blender.metric(truth, blender.apply(stack, fitted))
    alone = [honest_cv(blender, truth, stack[k : k + 1], folds)["score"] for k in range(2)]
    assert honest < min(alone) - 0.01  # clearly better than either
    assert optimistic <= honest + 1e-9  # fitted on the rows it scores: flattering
    raw = [blender.metric(truth, stack[k]) for k in range(2)]
    assert alone[1] < raw[1] - 0.01  # the temperature repairs the calibration


def test_rank_average_for_a_rank_metric_ignores_scale():
    task = _task("siim_isic_2020")  # ROC AUC
    rng = np.random.default_rng(1)
    truth = (rng.random((800, 1)) < 0.1).astype(float)
    stack = _two_views(rng, truth)
    stack[1] = stack[1] * 1e-3  # another scale: a plain average would all but drop it
    blender = Blender(task)
    assert blender.rank
    fitted = blender.fit(truth, stack)
    assert 0.2 < fitted.weights[0] < 0.8
    blended = blender.apply(stack, fitted)
    assert blended.min() >= 0 and blended.max() <= 1
    assert blender.metric(truth, blended) > max(blender.metric(truth, s) for s in stack)


def test_pf1_threshold_and_kappa_cuts_are_fitted():
    rng = np.random.default_rng(2)
    truth = (rng.random((600, 1)) < 0.1).astype(float)
    stack = _two_views(rng, truth, noise=0.8)
    blender = Blender(_task("rsna_breast_2023"))
    fitted = blender.fit(truth, stack)
    assert fitted.post["kind"] == "threshold"
    binarised = blender.apply(stack, fitted)
    assert set(np.unique(binarised)) <= {0.0, 1.0}
    assert blender.metric(truth, binarised) > blender.metric(
        truth, blender.weighted(stack, fitted.weights)
    )
    aptos = _task("aptos_2019")
    classes = rng.integers(0, 5, (500, 1)).astype(float)
    values = np.stack([classes * 0.6 + rng.normal(0, 0.5, classes.shape) for _ in "ab"])
    found = Blender(aptos).fit(classes, values)
    assert found.post["kind"] == "cuts" and len(found.post["cuts"]) == 4


def _store(root, name, ids, folds, preds, fingerprint="abc"):
    runs = RunLayout(root, name)
    for k in sorted(set(folds)):
        rows = folds == k
        out = runs.fold(k)
        out.mkdir(parents=True)
        pd.DataFrame({"image_id": ids[rows], "pred_any": preds[rows], "label_any": 0.0}).to_csv(
            out / "oof.csv", index=False
        )
    return store.open_store(runs, ["any"], fingerprint)


def test_experiments_with_other_folds_or_data_are_refused(tmp_path):
    ids = np.array([f"ID_{i:04d}" for i in range(60)])
    folds = np.arange(60) % 3
    a = _store(tmp_path, "a", ids, folds, np.linspace(0, 1, 60))
    assert a.record["folds"] == [0, 1, 2] and len(a.oof) == 60
    assert (tmp_path / "a" / store.POOLED).is_file()
    b = _store(tmp_path, "b", ids, np.roll(folds, 1), np.linspace(0, 1, 60))
    with pytest.raises(
        KitError, match=r"'a' and 'b' cannot be combined: the same folds hold different IDs"
    ):
        store.check_combinable([a, b])
    c = _store(tmp_path, "c", ids, folds, np.linspace(0, 1, 60), fingerprint="other")
    with pytest.raises(KitError, match="different label CSVs or folds.csv"):
        store.check_combinable([a, c])
    d = _store(tmp_path, "d", ids[folds < 2], folds[folds < 2], np.zeros(40))
    with pytest.raises(KitError, match=r"trained folds \[0, 1, 2\] vs \[0, 1\]"):
        store.check_combinable([a, d])
    store.check_combinable([a, _store(tmp_path, "e", ids, folds, np.ones(60))])


@pytest.mark.slow
def test_make_blend_of_two_trained_experiments(small_competition, trained, kaggle_python, tmp_path):
    """Two experiments of the small synthetic competition, the same two folds
    each and the test set predicted, blended through the CLI: the report, the honest blended
    store, the checked submission, and a blend of folds that differ refused."""
    from competition.pipeline.experiments import runs_table
    from competition.pipeline.predict import predict_and_submit
    from competition.pipeline.train import train_folds

    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    root = small_competition.data.root
    out = f"predict.submissions_dir={tmp_path / 'submissions'}"
    first = small_config(root, f"runs_dir={runs}", out, *TRAINED_WITH)
    second = small_config(
        root,
        f"runs_dir={runs}",
        out,
        *TRAINED_WITH,
        "experiment=small_b",
        "model.dropout=0.4",
        "train.learning_rate=0.003",
    )
    train_folds(second, [0, 1])  # the folds `trained` holds: a blend takes the same folds
    record = json.loads((runs / "small_b" / store.STORE).read_text())  # kept by training
    assert record["folds"] == [0, 1] and record["test"] is None
    for config in (first, second):
        predict_and_submit(config)
    assert json.loads((runs / "small_b" / store.STORE).read_text())["test"] == store.TEST
    where = [
        "--set",
        f"runs_dir={runs}",
        "--set",
        f"data.root={root}",
        "--set",
        f"predict.submissions_dir={tmp_path / 'submissions'}",
    ]
    done = cli("blend", "--experiments", "small,small_b", *where)
    assert done.returncode == 0, done.stderr
    report = json.loads((runs / "blend-small-small_b" / "blend.json").read_text())
    assert "| blend-small-small_b | blend | weighted_log_loss |" in runs_table(runs)
    assert sum(report["weights"].values()) == pytest.approx(1)
    assert set(report["alone"]) == {"small", "small_b"}
    assert report["kind"] == ("temperature" if report["post_processing_kept"] else "none")
    assert report["cv_optimistic"] <= report["cv_honest"]
    assert "| **blend** |" in done.stdout and "honest CV" in done.stdout
    submission = pd.read_csv(report["submission"])
    sample = pd.read_csv(small_competition.layout.sample_submission)
    assert submission["ID"].tolist() == sample["ID"].tolist()
    blended = store.open_store(RunLayout(runs, "blend-small-small_b"), first.task.outputs, None)
    assert blended.record["blend_of"] == ["small", "small_b"] and len(blended.oof) == len(
        store.open_store(first.runs, first.task.outputs, None).oof
    )
    _the_kernel_submits_the_blend_offline(first, report, kaggle_python, tmp_path)
    shutil.rmtree(runs / "small_b" / "fold1")
    refused = cli("blend", "--experiments", "small,small_b", *where)
    assert refused.returncode == 2
    assert "trained folds [0, 1] vs [0]" in refused.stderr


def _the_kernel_submits_the_blend_offline(config, report, python, tmp_path):
    """kaggle.submit blend: both experiments' folds and blend.json in the
    bundle; the kernel, offline, predicts with each and writes the blend:
    the same submission as make blend's."""
    from test_kaggle import bundle_and_run_offline

    built, done, written = bundle_and_run_offline(
        config, python, tmp_path, submit="blend", blend="blend-small-small_b"
    )
    assert {"runs/small_b/fold0/best.keras", "second_level/blend.json"} <= set(built["files"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "blend over ['small', 'small_b']" in done.stdout
    kernel, local = pd.read_csv(written), pd.read_csv(report["submission"])
    assert kernel["ID"].tolist() == local["ID"].tolist()
    np.testing.assert_allclose(kernel["Label"], local["Label"], atol=1e-5)
