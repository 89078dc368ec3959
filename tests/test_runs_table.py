"""`make runs`: every experiment in one table, its pooled CV equal to the
CV report's, the settings that differ from its preset, and the public LB
score the user records."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from competition.cli import main
from competition.evaluation.cv import cv_report

from conftest import small_config


def test_the_runs_table_lists_each_experiment_with_its_cv_settings_and_lb(
    small_competition, trained, tmp_path, capsys
):
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    shutil.copytree(runs / "small", runs / "small_copy")  # a second experiment
    args = ["--config", "configs/small.yaml", "--set", f"data.root={small_competition.data.root}",
            "--set", f"runs_dir={runs}"]  # fmt: skip
    assert main(["runs", "--lb", "small=0.1234", *args]) == 0
    table = pd.read_csv(runs / "experiments.csv")
    assert table.experiment.tolist() == ["small", "small_copy"]
    config = small_config(small_competition.data.root, f"runs_dir={runs}", "train.epochs=1")
    report = cv_report(config.task, config.runs)
    row = table.iloc[0]
    assert row.stage == 1 and row.metric == config.task.metric.name
    assert row.cv == pytest.approx(report["overall"]["score"], rel=1e-9)
    assert row.folds.split() == [f"{k}:{v['score']:.4f}" for k, v in report["folds"].items()]
    assert row.public_lb == 0.1234 and pd.isna(table.iloc[1].public_lb)
    assert row.preset == "configs/small.yaml" and row.differs == "train.epochs=1"
    printed = capsys.readouterr().out
    assert "| small | 1 |" in printed and (runs / "experiments.md").is_file()
    assert main(["runs", "--lb", "absent=0.5", *args]) == 2
    assert "no experiment 'absent'" in capsys.readouterr().err
