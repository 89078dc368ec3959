"""The stacking stage: patient-relative features, balanced batches, and
make stack end to end on a tiny ISIC 2024 stand-in (HDF5 images with a
corrupt entry and a missing test key): an image model on every fold, its
out-of-fold predictions and the metadata into LightGBM, resumed without
retraining, refused when its inputs change."""

from __future__ import annotations

import json
import os
import signal
import time

import h5py
import lightgbm
import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.stacking import features as feats

from helpers import REPO, cli, start_kit


def test_patient_relative_features_compare_a_lesion_with_its_patient():
    table = pd.DataFrame({"size": [1.0, 2.0, 3.0, 10.0, 20.0, 90.0], "site": list("aabbcc")})
    patients = pd.Series(["p", "p", "p", "q", "q", "q"])
    found = feats.relative(table, patients, ["size"])
    assert found["size__pmean"].tolist() == [2.0, 2.0, 2.0, 40.0, 40.0, 40.0]
    assert found["size__prank"].tolist() == pytest.approx([1 / 3, 2 / 3, 1, 1 / 3, 2 / 3, 1])
    assert found["size__pz"].iloc[5] > 1 > found["size__pz"].iloc[3] * -1 - 1
    assert found["rows_per_patient"].tolist() == [3] * 6
    train = pd.DataFrame(
        {"age": ["40", "50", None], "sex": ["m", "f", "m"], "pid": ["1", "1", "2"]}
    )
    test = pd.DataFrame({"age": ["45"], "sex": ["x"], "pid": ["3"]})
    columns = feats.tabular_columns(train, test, {"pid"}, None, [])
    built = feats.build(train, test, columns, "pid", None, True)
    assert built.numeric == ["age"] and built.categorical == ["sex"]
    assert built.missing == {"age": 1}
    assert list(built.train["sex"].cat.categories) == list(built.test["sex"].cat.categories)


def test_balanced_sample_weights_draw_positives_as_often_as_negatives():
    from competition.pipeline.generators import sample_repeats

    config = load_config(REPO / "configs" / "isic_2024.yaml")
    rows = pd.DataFrame({"target": [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]})
    repeats = sample_repeats(config, rows)
    assert repeats.tolist() == [4.0, 1, 1, 1, 1, 1, 1, 1, 1, 4.0]  # 8 negatives, 2 x 4 positives
    with pytest.raises(Exception, match="expects a mapping of str to float or one of 'balanced'"):
        load_config(REPO / "configs" / "isic_2024.yaml", ["train.sample_weights={target: even}"])


TINY = ["synth.patients=30", "synth.images_per_patient=[8, 16]", "synth.image_size=48",
        "synth.prevalence={target: 0.1}", "folds.k=3", "preprocess.image_size=32",
        "train.epochs=1", "train.steps_per_epoch=6", "train.batch_size=16", "train.workers=1",
        "stack.seeds=2", "stack.rounds=400",
        "model.metadata_numeric=[age_approx, tbp_lv_color_std_mean, tbp_lv_H]",
        "model.metadata_categorical=[sex, anatom_site_general]"]  # fmt: skip


@pytest.mark.slow
def test_make_stack_on_a_tiny_isic_2024_stand_in(kaggle_python, tmp_path):
    from competition.pipeline.experiments import runs_table
    from competition.pipeline.predict import predict_and_submit
    from competition.pipeline.prepare import ensure_data, ensure_synthetic
    from competition.pipeline.train import train_folds

    root, runs, subs = tmp_path / "isic", tmp_path / "runs", tmp_path / "submissions"
    overrides = [f"data.root={root}", f"runs_dir={runs}", f"predict.submissions_dir={subs}", *TINY]
    config = load_config(REPO / "configs" / "synthetic" / "isic_2024.yaml", overrides)
    ensure_synthetic(config)
    with h5py.File(root / "train-image.hdf5", "a") as handle:  # a bad train entry
        broken = sorted(handle)[3]
        del handle[broken]
        handle.create_dataset(broken, data=np.bytes_(b"\xff\xd8 cut short"))
    with h5py.File(root / "test-image.hdf5", "a") as handle:  # a test lesion with no image
        lost = sorted(handle)[0]
        del handle[lost]
    ensure_data(config)
    trained = train_folds(config, [0, 1, 2])
    _the_image_model_has_a_metadata_branch(config, trained)
    summary = predict_and_submit(config)
    assert lost in summary["unreadable"]
    args = ["stack", "--config", "configs/synthetic/isic_2024.yaml"]
    args += [a for o in overrides for a in ("--set", o)]
    out = runs / "isic_2024_synthetic" / "stack"
    kept = _killed_after_its_first_boosters(args, out)
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert "| fold | isic_2024_synthetic | stack |" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # resumed: kept, not retrained
    uninterrupted = cli(*args, "--set", "stack.name=uninterrupted")
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "oof.csv"), pd.read_csv(out.with_name("uninterrupted") / "oof.csv")
    )
    report = json.loads((out / "stack.json").read_text())
    table = runs_table(runs)
    assert "| isic_2024_synthetic | stack:stack | partial_auc |" in table
    assert "pred__isic_2024_synthetic__target" in report["features"]["all"]
    assert (
        "tbp_lv_H__pz" in report["features"]["all"]
        and "rows_per_patient" in report["features"]["all"]
    )
    assert not {"iddx_1", "lesion_id", "mel_thick_mm"} & set(
        report["features"]["all"]
    )  # train-only
    assert "sex" in report["features"]["categorical"]
    folds = pd.read_csv(root / "folds.csv")
    assert broken not in set(folds["image_id"])
    oof = pd.read_csv(out / "oof.csv")
    assert len(oof) == len(folds) and set(oof["fold"]) == {0, 1, 2}
    submission = pd.read_csv(report["submission"])
    assert (
        submission["isic_id"].tolist()
        == pd.read_csv(root / "sample_submission.csv")["isic_id"].tolist()
    )
    boosters = sorted(out.glob("[!.]*.txt"))
    assert len(boosters) == 3 * 2
    stamps = [p.stat().st_mtime_ns for p in boosters]
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert [p.stat().st_mtime_ns for p in boosters] == stamps  # resumed: nothing retrained
    pd.testing.assert_frame_equal(pd.read_csv(out / "oof.csv"), oof)
    changed = cli(*args, "--set", "stack.rounds=30")
    assert (
        changed.returncode == 2
        and "boosters made from other inputs (stack differ)" in changed.stderr
    )
    _the_kernel_submits_the_stack_offline(config, summary, report, kaggle_python, tmp_path)


def _the_kernel_submits_the_stack_offline(config, summary, report, python, tmp_path):
    """kaggle.submit stack: the bundle holds the image model's folds and the
    boosters; the kernel, offline in a Kaggle-like environment, finds the
    HDF5 test file and the test CSV (the metadata branch's columns), predicts
    with the folds, then the stack: the same submission as make stack's."""
    from test_kaggle import bundle_and_run_offline

    built, done, written = bundle_and_run_offline(config, python, tmp_path, submit="stack")
    assert any(f.startswith("second_level/target.fold2.seed1") for f in built["files"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stack over ['isic_2024_synthetic']" in done.stdout
    kernel, local = pd.read_csv(written), pd.read_csv(report["submission"])
    assert kernel["isic_id"].tolist() == local["isic_id"].tolist()
    np.testing.assert_allclose(kernel["target"], local["target"], atol=1e-5)
    assert summary["unreadable"]  # the lost test key: the training mean, in both


def _killed_after_its_first_boosters(args, out) -> dict:
    """make stack killed with SIGKILL once a booster is saved: the saved ones
    (path -> mtime), fewer than all; no half-written booster under its name."""
    proc = start_kit(*args)
    deadline = time.monotonic() + 120
    while not list(out.glob("[!.]*.txt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    kept = {p: p.stat().st_mtime_ns for p in out.glob("[!.]*.txt")}
    assert 1 <= len(kept) < 6, proc.stderr.read()[-2000:]
    for path in kept:  # each one whole: it loads
        assert lightgbm.Booster(model_file=str(path)).num_trees() == 400
    return kept


def _the_image_model_has_a_metadata_branch(config, trained):
    """The CSV columns rode beside the images: a second input, the label
    CSV's vocabulary in the checkpoint, the missing values reported."""
    from competition.training.model import load_checkpoint

    assert all(metrics["metadata_missing"]["sex"] > 0 for metrics in trained)
    model = load_checkpoint(config.runs.fold(0) / "best.keras")
    assert [tuple(s) for s in model.input_shape] == [(None, 32, 32, 3), (None, 2 * 3 + 2)]
    vocab = model.get_layer("metadata_branch").vocabularies
    assert vocab["sex"] == ["female", "male"] and len(vocab["anatom_site_general"]) == 5
