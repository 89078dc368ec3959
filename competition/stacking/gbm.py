"""The stacking stage's model: LightGBM boosters on the same patient-grouped
folds as the image models, bagged over seeds; one booster per (output,
fold, seed), each saved as soon as it is trained (`<output>.fold<k>.seed<s>.txt`,
written atomically), so a killed run resumes where it stopped. The rounds
are fixed: choosing them on the held-out fold would leak it into its score.
With `negatives_per_positive` each seed's booster sees every positive and a
fresh draw of that many negatives per positive (the ISIC 2024 winners'
undersampling, which the seed bagging then averages out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import KitError
from competition.fileio import atomic_path
from competition.progress import Progress
from competition.stacking.settings import StackConfig


def _params(stack: StackConfig, seed: int, threads: int) -> dict:
    return {
        "objective": "binary",
        "learning_rate": stack.learning_rate,
        "num_leaves": stack.num_leaves,
        "min_child_samples": stack.min_child_samples,
        "feature_fraction": stack.feature_fraction,
        "bagging_fraction": stack.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": seed,
        "num_threads": threads,
        "verbose": -1,
    }


def _rows(target: np.ndarray, ratio: int, seed: int) -> np.ndarray:
    """The training rows of one seed's booster (every row, or undersampled)."""
    rows = np.flatnonzero(~np.isnan(target))
    if not ratio:
        return rows
    positive = rows[target[rows] > 0.5]
    negative = rows[target[rows] <= 0.5]
    take = min(len(negative), max(1, ratio * len(positive)))
    drawn = np.random.default_rng(seed).choice(negative, take, replace=False)
    return np.sort(np.concatenate([positive, drawn]))


def train_booster(
    features: pd.DataFrame,
    target: np.ndarray,
    stack: StackConfig,
    seed: int,
    threads: int,
    path: Path,
):
    """The booster saved at `path`, trained first when it is not there."""
    import lightgbm

    if path.is_file():
        return checked(lightgbm.Booster(model_file=str(path)), features, path)
    rows = _rows(target, stack.negatives_per_positive, seed)
    data = lightgbm.Dataset(features.iloc[rows], label=target[rows], free_raw_data=False)
    booster = lightgbm.train(_params(stack, seed, threads), data, num_boost_round=stack.rounds)
    with atomic_path(path, suffix=".txt") as tmp:
        booster.save_model(str(tmp))
    return booster


def fit_out_of_fold(
    train: pd.DataFrame,
    targets: np.ndarray,
    folds: np.ndarray,
    outputs: list[str],
    stack: StackConfig,
    seed: int,
    threads: int,
    out: Path,
) -> tuple[np.ndarray, dict]:
    """Out-of-fold predictions of the training rows (each fold's boosters,
    averaged over seeds) and each feature's total gain."""
    oof = np.zeros((len(train), len(outputs)))
    gain = pd.Series(0.0, index=train.columns)
    fold_ids = np.unique(folds)
    progress = Progress(len(outputs) * len(fold_ids) * stack.seeds, "stack", unit="boosters")
    for j, output in enumerate(outputs):
        for fold in fold_ids:
            held_out = np.flatnonzero(folds == fold)
            target = np.where(folds != fold, targets[:, j], np.nan)
            for s in range(stack.seeds):
                path = out / booster_name(output, fold, s)
                booster = train_booster(train, target, stack, seed + 1000 * s + fold, threads, path)
                oof[held_out, j] += booster.predict(train.iloc[held_out]) / stack.seeds
                gain += booster.feature_importance("gain") / len(outputs)
                progress.advance(1)
    progress.close()
    return oof, gain.sort_values(ascending=False).to_dict()


def checked(booster, features: pd.DataFrame, path: Path):
    """The booster, when it was trained on these feature columns in this order
    (LightGBM takes columns by position: another order would be garbage)."""
    if booster.feature_name() != list(features.columns):
        raise KitError(
            f"{path} was trained on other features ({len(booster.feature_name())} columns, "
            f"these are {len(features.columns)}, or in another order). Train the stack again: "
            "make stack ARGS=--force"
        )
    return booster


def booster_name(output: str, fold: int, seed: int) -> str:
    return f"{output}.fold{fold}.seed{seed}.txt"


def predict_saved(
    folder: Path, features: pd.DataFrame, outputs: list[str], folds: list[int], seeds: int
) -> np.ndarray:
    """The mean of every saved booster's predictions for `features` (the test
    rows, in make stack and in the Kaggle kernel alike). LightGBM maps each
    categorical column onto the categories it was trained with."""
    import lightgbm

    found = np.zeros((len(features), len(outputs)))
    for j, output in enumerate(outputs):
        paths = [folder / booster_name(output, k, s) for k in folds for s in range(seeds)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise KitError(f"{folder} lacks the boosters {missing[:3]} (make stack trains them)")
        for path in paths:
            booster = checked(lightgbm.Booster(model_file=str(path)), features, path)
            found[:, j] += booster.predict(features) / len(paths)
    return found
