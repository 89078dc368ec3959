"""`make errors`: the worst validation images per output with their
Grad-CAM, reliability diagrams per head, on the backend the fold runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd

from competition.cli import main
from competition.pipeline.errors import reliability, worst_rows


def test_the_worst_rows_are_the_largest_log_losses_per_output():
    oof = pd.DataFrame({"image_id": ["a", "b", "c", "d"],
                        "pred_x": [0.9, 0.1, 0.6, 0.2], "label_x": [0, 0, 1, np.nan],
                        "pred_y": [0.5, 0.99, 0.3, 0.7], "label_y": [1, 1, 0, 0]})  # fmt: skip
    picks = worst_rows(oof, ["x", "y"], 2)
    assert [(p["output"], p["image_id"]) for p in picks] == [("x", "a"), ("x", "c"),
                                                             ("y", "d"), ("y", "a")]  # fmt: skip
    assert np.isclose(picks[0]["log_loss"], -np.log(0.1))


def test_reliability_bins_and_the_expected_calibration_error():
    truth = np.array([0, 0, 1, 1, np.nan])
    predicted = np.array([0.05, 0.15, 0.95, 0.85, 0.5])
    found = reliability(truth, predicted)
    assert found["count"] == 4
    assert [n for _, _, n in found["bins"]] == [1, 1, 1, 1]
    assert np.isclose(found["ece"], (0.05 + 0.15 + 0.05 + 0.15) / 4)


def test_make_errors_draws_the_worst_images_with_grad_cam(small_competition, trained, tmp_path,
                                                          capsys):  # fmt: skip
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    args = ["--config", "configs/small.yaml", "--set", f"data.root={small_competition.data.root}",
            "--set", f"runs_dir={runs}", "--set", "train.epochs=1"]  # fmt: skip
    assert main(["errors", "--fold", "1", "--k", "2", *args]) == 0
    out = runs / "small" / "errors"
    report = json.loads((out / "errors.json").read_text())
    outputs = small_competition.task.outputs
    assert {p["output"] for p in report["worst"]} == set(outputs)
    assert len(report["worst"]) == 2 * len(outputs)
    oof = pd.read_csv(runs / "small" / "fold1" / "oof.csv", dtype={"image_id": str})
    first = report["worst"][0]
    row = oof.set_index("image_id").loc[first["image_id"]]
    assert np.isclose(row[f"pred_{first['output']}"], first["prediction"])
    for name in ("fold1_worst.png", "reliability.png"):
        assert (out / name).stat().st_size > 10_000
    assert "expected calibration error" in capsys.readouterr().out
