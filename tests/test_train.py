from __future__ import annotations

import json
import signal
import subprocess
import time

import pandas as pd
import pytest

from competition.config import ConfigError, load_config
from competition.data.index import MissingTableError
from competition.pipeline.inputs import fold_data, read_inputs
from competition.pipeline.train import train_folds

from conftest import small_config
from helpers import cli, start_kit


def run_config(base, tmp_path, *overrides):
    return small_config(base.data.root, f"runs_dir={tmp_path / 'runs'}", *overrides)


@pytest.mark.slow
def test_short_fit_lowers_the_loss_and_writes_the_fold(small_competition, tmp_path):
    config = run_config(
        small_competition,
        tmp_path,
        "train.epochs=3",
        "augment=[]",
        "train.learning_rate=0.003",
    )
    (metrics,) = train_folds(config, [0])
    out = config.runs.fold(0)
    history = pd.read_csv(out / "history.csv")
    assert history.epoch.tolist() == [0, 1, 2]
    assert history.loss.iloc[-1] < history.loss.iloc[0]
    for name in (
        "best.keras",
        "oof.csv",
        "metrics.json",
        "config.yaml",
        "inputs.json",
        "curves.png",
    ):
        assert (out / name).exists(), name
    assert not (out / "backup").exists()
    oof = pd.read_csv(out / "oof.csv")
    valid = fold_data(config, read_inputs(config), 0).valid
    assert oof.image_id.tolist() == valid.image_id.tolist()
    assert oof.filter(like="pred_").to_numpy().min() > 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metric"] == "weighted_log_loss"
    assert (
        saved["score"] == pytest.approx(metrics["score"])
        and saved["score"] < saved["baseline_score"]
    )
    assert load_config(out / "config.yaml") == config
    (again,) = train_folds(config, [0])  # a finished fold is not trained again
    assert again == saved


@pytest.mark.slow
def test_killed_run_resumes_at_the_epoch_it_reached(small_competition, tmp_path):
    args = [
        "train",
        "--config",
        "configs/small.yaml",
        "--set",
        f"data.root={small_competition.data.root}",
        "--set",
        f"runs_dir={tmp_path / 'runs'}",
        "--set",
        "train.epochs=4",
        "--set",  # short epochs over a weighted stream: resumed where the kill left it
        "train.steps_per_epoch=3",
        "--set",
        "train.sample_weights={epidural: 3}",
    ]
    out = tmp_path / "runs" / "small" / "fold0"
    proc = start_kit(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "backup" / "epoch-0002.weights.h5").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before epoch 2"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "metrics.json").exists()
    result = cli(*args, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Resuming fold 0 at epoch" in result.stdout
    resumed_at = int(result.stdout.split("Resuming fold 0 at epoch ")[1].split()[0])
    assert resumed_at >= 3
    assert pd.read_csv(out / "history.csv").epoch.tolist() == [0, 1, 2, 3]
    assert (out / "metrics.json").exists()
    assert not list(out.rglob(".*tmp*"))  # no temporary checkpoint left behind


def test_bad_fold_and_missing_folds_are_clear_errors(small_competition, tmp_path):
    config = run_config(small_competition, tmp_path)
    with pytest.raises(ConfigError, match=r"fold must be in 0..2 \(folds.k=3\). Received: fold=3"):
        train_folds(config, [3])
    empty = small_config(tmp_path / "nothing", f"runs_dir={tmp_path / 'runs'}")
    with pytest.raises(MissingTableError, match="make folds"):
        train_folds(empty, [0])
    assert not (tmp_path / "runs").exists()  # nothing written


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ConfigError, match="EfficientNetB0.*Xception.*efficientnet_b0.*tiny_cnn"):
        load_config(None, ["model.backbone=vgg99"])


def test_missing_weights_file_is_a_clear_error_before_anything_is_written(
    small_competition, tmp_path
):
    config = run_config(small_competition, tmp_path, f"model.weights={tmp_path / 'none.h5'}")
    with pytest.raises(Exception, match="no weights file at"):
        train_folds(config, [0])
    assert not (tmp_path / "runs").exists()


def test_cli_reports_errors_without_a_traceback(small_competition, tmp_path):
    result = cli(
        "train",
        "--config",
        "configs/small.yaml",
        "--fold",
        "7",
        "--set",
        f"data.root={small_competition.data.root}",
        "--set",
        f"runs_dir={tmp_path / 'runs'}",
        timeout=120,
    )
    assert result.returncode == 2
    assert "fold must be in 0..2" in result.stderr and "Traceback" not in result.stderr
