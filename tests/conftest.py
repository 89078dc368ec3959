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
    from competition.pipeline.prepare import ensure_data

    config = small_config(tmp_path_factory.mktemp("small") / "competition")
    ensure_data(config)
    return config


@pytest.fixture(scope="session")
def trained(small_competition, tmp_path_factory):
    """A runs folder with folds 0 and 1 of the small preset trained, one epoch
    each (fold 2 left untrained). Tests that write into it copy it first."""
    from competition.pipeline.train import train_folds

    runs = tmp_path_factory.mktemp("runs")
    config = small_config(small_competition.data.root, f"runs_dir={runs}", *TRAINED_WITH)
    train_folds(config, [0, 1])
    return runs


@pytest.fixture(scope="module")
def kaggle_python(tmp_path_factory):
    """A virtual environment like Kaggle's image (test_kaggle.kaggle_image_python)."""
    from test_kaggle import kaggle_image_python

    return kaggle_image_python(tmp_path_factory.mktemp("kaggle-image") / "venv")


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Whatever a test started with start_kit is killed, group and all, when it ends."""
    yield
    while STARTED:
        kill_group(STARTED.pop())


PRESETS = ("siim_isic_2020", "aptos_2019", "rsna_breast_2023", "ranzcr_clip_2021")
# Tiny versions of the presets' stand-ins: seconds to write, seconds to train.
TINY = {
    "siim_isic_2020": [
        "synth.patients=24",
        "synth.images_per_patient=[2, 6]",
        "synth.image_size=96",
        "preprocess.image_size=48",
    ],
    "aptos_2019": ["synth.patients=60", "synth.image_size=96", "preprocess.image_size=48"],
    "rsna_breast_2023": [
        "synth.patients=16",
        "synth.image_size=96",
        "preprocess.image_size=[64, 32]",
        "synth.prevalence.cancer=0.3",
    ],
    "ranzcr_clip_2021": ["synth.patients=30", "synth.image_size=96", "preprocess.image_size=48"],
}
TINY_TRAINING = ("folds.k=3", "train.epochs=2", "train.batch_size=16", "train.workers=1")


def preset_args(name: str, root, *extra: str) -> list[str]:
    """CLI arguments for the tiny synthetic version of a preset at `root`."""
    overrides = [f"data.root={root}", *TINY[name], *TINY_TRAINING, *extra]
    return [
        "--config",
        f"configs/synthetic/{name}.yaml",
        *(a for o in overrides for a in ("--set", o)),
    ]


def preset_config(name: str, root, *extra: str) -> Config:
    overrides = [f"data.root={root}", *TINY[name], *TINY_TRAINING, *extra]
    return load_config(REPO / "configs" / "synthetic" / f"{name}.yaml", overrides)


@pytest.fixture(scope="session")
def presets(tmp_path_factory):
    """name -> (root, runs): each preset's tiny stand-in written, indexed and
    folded, with fold 0 trained, once per session (on first use)."""
    from competition.pipeline.prepare import ensure_data
    from competition.pipeline.train import train_folds

    made = {}

    def get(name: str):
        if name not in made:
            base = tmp_path_factory.mktemp(name)
            root, runs = base / "competition", base / "runs"
            ensure_data(preset_config(name, root))
            train_folds(preset_config(name, root, f"runs_dir={runs}"), [0])
            made[name] = root, runs
        return made[name]

    return get
