"""A finished fold is reused, and predicted with, only for the inputs that
made it; a checkpoint written by the previous package layout still loads;
the data set-up commands work on a fresh folder; errors say the way out."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from competition.errors import KitError
from competition.inference.submission import validate_file
from competition.pipeline.predict import predict_and_submit
from competition.pipeline.runs import differences
from competition.pipeline.train import train_folds
from competition.training.model import load_checkpoint

from conftest import TRAINED_WITH, small_config
from helpers import REPO, cli

PREVIOUS = REPO / "tests" / "data" / "previous_layout"


def copied_runs(trained, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained / "small" / "fold0", runs / "small" / "fold0")
    return runs


def other_competition(small_competition, tmp_path, change_a_label: bool):
    """A copy of the small competition elsewhere; with one label changed, it is other data."""
    root = tmp_path / "other"
    shutil.copytree(small_competition.data.root, root, ignore=shutil.ignore_patterns("cache"))
    if change_a_label:
        labels = root / "stage_2_train.csv"
        lines = labels.read_text().splitlines()
        image = lines[1].split(",")[0].rsplit("_", 1)[0]
        for i, line in enumerate(lines):
            if line.startswith(image) and line.split(",")[0].rsplit("_", 1)[1] in (
                "subdural",
                "any",
            ):
                lines[i] = line.rsplit(",", 1)[0] + ",1"
        labels.write_text("\n".join(lines) + "\n")
    return root


def test_a_fold_trained_on_other_data_is_not_reused(small_competition, trained, tmp_path):
    runs = copied_runs(trained, tmp_path)
    root = other_competition(small_competition, tmp_path, change_a_label=True)
    config = small_config(root, f"runs_dir={runs}", "synth.generate=false", *TRAINED_WITH)
    with pytest.raises(KitError) as info:
        train_folds(config, [0])
    message = str(info.value)
    assert "fold0 was trained with other inputs" in message
    assert "data: the label CSV or folds.csv differ" in message and str(root) in message
    assert "--force" in message and "--set experiment=NAME" in message
    with pytest.raises(KitError, match="data: the label CSV"):  # prediction checks the same
        predict_and_submit(config)


def test_the_same_data_moved_elsewhere_is_the_same_data(small_competition, trained, tmp_path):
    runs = copied_runs(trained, tmp_path)
    root = other_competition(small_competition, tmp_path, change_a_label=False)
    config = small_config(root, f"runs_dir={runs}", "synth.generate=false", *TRAINED_WITH)
    assert differences(config, 0) == []


def test_other_settings_are_named_and_force_is_the_way_on(small_competition, trained, tmp_path):
    runs = copied_runs(trained, tmp_path)
    overrides = [
        f"data.root={small_competition.data.root}",
        f"runs_dir={runs}",
        f"predict.submissions_dir={tmp_path / 'subs'}",
        *TRAINED_WITH,
        "augment=[{RandomFlip: {mode: vertical}}]",  # changes the model
        "train.workers=2",  # changes only how fast it trains
    ]
    args = ["--config", "configs/small.yaml", *(a for o in overrides for a in ("--set", o))]
    refused = cli("predict", *args, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "- augment: " in refused.stderr and "vertical" in refused.stderr
    assert "train.workers" not in refused.stderr  # how fast, not what
    assert "or add --force to use them anyway" in refused.stderr
    forced = cli("predict", *args, "--force", timeout=300)
    assert forced.returncode == 0, forced.stderr[-2000:]
    trained_again = cli("train", "--fold", "0", *args, timeout=300)
    assert (
        trained_again.returncode == 2 and "make train FOLD=0 ARGS=--force" in trained_again.stderr
    )


# --- the previous package layout ------------------------------------------------------------


def test_a_checkpoint_saved_by_the_previous_layout_loads_and_predicts_the_same():
    model = load_checkpoint(PREVIOUS / "fold0" / "best.keras")  # safe mode, ChannelNormalize inside
    probe = np.load(PREVIOUS / "probe_inputs.npy")
    expected = np.load(PREVIOUS / "probe_outputs.npy")
    np.testing.assert_allclose(
        model.predict(probe.astype(np.float32), verbose=0), expected, atol=1e-6
    )
    assert [layer.name for layer in model.layers][-1] == "subtypes"


def test_a_fold_folder_of_the_previous_layout_predicts_a_valid_submission(
    small_competition, tmp_path
):
    runs = tmp_path / "runs"
    shutil.copytree(PREVIOUS / "fold0", runs / "small" / "fold0")
    config = small_config(
        small_competition.data.root, f"runs_dir={runs}", f"predict.submissions_dir={tmp_path}"
    )
    assert differences(config, 0) == []  # its old config.yaml agrees where the keys still exist
    summary = predict_and_submit(config)
    sample = config.layout.sample_submission
    assert validate_file(config.task, summary["submission"], sample)[0] == []
    old = json.loads((PREVIOUS / "fold0" / "metrics.json").read_text())["prevalence"]
    assert summary["training_mean"] == pytest.approx(old)  # its `prevalence`: the training mean


# --- set-up on a fresh folder, and the way out of the first errors -------------------------------


@pytest.mark.slow
def test_make_folds_on_a_fresh_folder_writes_the_synthetic_competition_first(tmp_path):
    root = tmp_path / "fresh"
    result = cli(
        "folds", "--config", "configs/small.yaml", "--set", f"data.root={root}", timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    folds = pd.read_csv(root / "folds.csv")
    assert (root / "synthetic.json").is_file() and (root / "index.csv").is_file()
    assert sorted(folds.fold.unique()) == [0, 1, 2]
    make = __import__("subprocess").run(
        ["make", "-n", "folds", "cache", "index"], cwd=REPO, capture_output=True, text=True
    )
    assert make.stdout.count("-m competition") == 3  # each target is the CLI command


def test_the_default_config_on_a_real_download_says_which_config_to_use(tmp_path):
    real = tmp_path / "download"
    real.mkdir()
    (real / "stage_2_train.csv").write_text("ID,Label\n")
    result = cli(
        "predict", "--set", f"data.root={real}", "--set", f"runs_dir={tmp_path}", timeout=120
    )
    assert result.returncode == 2 and "refusing to overwrite" in result.stderr
    assert "CONFIG=configs/rsna_ich.yaml DATA_DIR=<folder>" in result.stderr
    assert "--set synth.generate=false" in result.stderr
    assert sorted(p.name for p in real.iterdir()) == ["stage_2_train.csv"]  # untouched


def test_an_experiment_folder_carries_its_config(trained, tmp_path):
    """`--experiment NAME` (make ... EXPERIMENT=NAME) takes the config the
    folds were trained with: no CONFIG, DATA_DIR or ARGS to repeat."""
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    report = cli("report", "--experiment", "small", "--set", f"runs_dir={runs}", timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "weighted_log_loss" in report.stdout and str(runs / "small" / "cv.json") in report.stdout
    clash = cli(
        "predict", "--experiment", "small", "--set", f"runs_dir={runs}",
        "--set", "preprocess.image_size=32", timeout=120,
    )  # fmt: skip
    assert clash.returncode == 2
    assert "preprocess.image_size: 64 trained, 32 given" in clash.stderr
    missing = cli("report", "--experiment", "nothing", "--set", f"runs_dir={runs}", timeout=60)
    assert missing.returncode == 2 and "No trained fold of experiment 'nothing'" in missing.stderr
    dry = subprocess.run(
        ["make", "-n", "predict", "EXPERIMENT=small"], cwd=REPO, capture_output=True, text=True
    )
    assert "--experiment small" in dry.stdout
