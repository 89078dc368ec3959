from __future__ import annotations

import pytest

from competition.config import Config, load_config

from helpers import REAL_SERIES, REPO, STARTED, kill_group


@pytest.fixture(scope="session")
def real_series():
    if not (REAL_SERIES / "stage_2_test").is_dir():
        pytest.skip(f"the real sample series is not at {REAL_SERIES}")
    return REAL_SERIES


# What the shared trained folds were trained with: a config that uses them says so too
# (a fold is only predicted with, or reused, under the config that made it).
TRAINED_WITH = ("train.epochs=1",)


def small_config(root, *overrides: str) -> Config:
    return load_config(REPO / "configs" / "small.yaml", [f"data.root={root}", *overrides])


@pytest.fixture(scope="session")
def small_competition(tmp_path_factory) -> Config:
    """The `small` synthetic preset, written, indexed and folded once per session."""
    from competition.data.prepare import ensure_data

    config = small_config(tmp_path_factory.mktemp("small") / "competition")
    ensure_data(config)
    return config


@pytest.fixture(scope="session")
def trained(small_competition, tmp_path_factory):
    """A runs folder with folds 0 and 1 of the small preset trained, one epoch
    each (fold 2 left untrained). Tests that write into it copy it first."""
    from competition.training.fit import train_folds

    runs = tmp_path_factory.mktemp("runs")
    config = small_config(small_competition.data.root, f"runs_dir={runs}", *TRAINED_WITH)
    train_folds(config, [0, 1])
    return runs


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Whatever a test started with start_kit is killed, group and all, when it ends."""
    yield
    while STARTED:
        kill_group(STARTED.pop())
