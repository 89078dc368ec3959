"""Sweep files, the experiment names of their points, the ranking table, and
the fold attempts' ownership records (no Ray needed for these)."""

from __future__ import annotations

import pytest

from competition.cluster import sweep
from competition.cluster.owner import claim, read_owner
from competition.errors import ConfigError, KitError


def write(tmp_path, text: str):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_a_grid_and_a_list_give_every_point_once(tmp_path):
    path = write(
        tmp_path,
        "grid:\n  train.learning_rate: [0.001, 0.003]\n  model.dropout: [0.1, 0.3]\n"
        "points:\n  - {model.backbone: efficientnet_b0, preprocess.image_size: 256}\n",
    )
    points = sweep.read_sweep(path)
    assert len(points) == 5
    assert {"train.learning_rate": 0.003, "model.dropout": 0.1} in points
    assert sweep.overrides(points[-1]) == [
        'model.backbone="efficientnet_b0"',
        "preprocess.image_size=256",
    ]


def test_point_names_are_deterministic_safe_and_distinct():
    a = sweep.point_name("small", {"train.learning_rate": 0.003, "model.dropout": 0.1})
    b = sweep.point_name("small", {"model.dropout": 0.1, "train.learning_rate": 0.003})
    assert a == b == "small--model.dropout-0.1--train.learning_rate-0.003"
    odd = sweep.point_name("small", {"predict.tta": ["identity", "hflip"]})
    assert "/" not in odd and " " not in odd and "[" not in odd
    long = sweep.point_name("x", {f"train.k{i}": "v" * 30 for i in range(8)})
    assert len(long) <= sweep.MAX_NAME
    other = sweep.point_name("x", {f"train.k{i}": "w" * 30 for i in range(8)})
    assert long != other  # cut names keep a hash of the whole


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("grid:\n  train.learning_rat: [0.1]\n", "train.learning_rat"),
        ("grid:\n  train.epochs: [two]\n", "train.epochs"),
        ("grid:\n  train.epochs: 3\n", "non-empty list"),
        ("points: [{}]\n", "non-empty"),
        ("sweep: []\n", "grid:"),
        ("points:\n  - {train.epochs: 2}\n  - {train.epochs: 2}\n", "twice"),
    ],
)
def test_a_bad_sweep_file_is_named_with_what_is_wrong(tmp_path, text, says):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=says):
        sweep.read_sweep(path)


def test_the_ranking_puts_the_best_pooled_score_first_either_way():
    rows = [
        {"experiment": "a", "overrides": ["x=1"], "score": 0.30, "folds": "0,1"},
        {"experiment": "b", "overrides": ["x=2"], "score": 0.20, "folds": "0,1"},
        {"experiment": "c", "overrides": ["x=3"], "score": float("nan"), "folds": "0"},
    ]
    lower = sweep.ranking(rows, lower_is_better=True).splitlines()
    assert lower[2].startswith("| 1 | b |") and lower[4].startswith("| 3 | c |")
    higher = sweep.ranking(rows, lower_is_better=False).splitlines()
    assert higher[2].startswith("| 1 | a |")


def test_a_stale_attempt_cannot_write_after_a_newer_one_claimed_the_fold(tmp_path):
    first = claim(tmp_path / "fold0", "node-a")
    first.check()  # still the owner
    second = claim(tmp_path / "fold0", "node-b", {"cuda_visible_devices": ""})
    assert second.attempt == 2 and read_owner(tmp_path / "fold0")["node"] == "node-b"
    with pytest.raises(KitError, match="attempt 2.*stops without writing"):
        first.check()
    second.check()
