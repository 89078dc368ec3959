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
        return lightgbm.Booster(model_file=str(path))
    rows = _rows(target, stack.negatives_per_positive, seed)
    data = lightgbm.Dataset(features.iloc[rows], label=target[rows], free_raw_data=False)
    booster = lightgbm.train(_params(stack, seed, threads), data, num_boost_round=stack.rounds)
    with atomic_path(path, suffix=".txt") as tmp:
        booster.save_model(str(tmp))
    return booster


def fit_predict(
    train: pd.DataFrame,
    targets: np.ndarray,
    folds: np.ndarray,
    test: pd.DataFrame,
    outputs: list[str],
    stack: StackConfig,
    seed: int,
    threads: int,
    out: Path,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Out-of-fold predictions of the training rows, the test rows' (the
    mean over folds and seeds) and each feature's total gain."""
    oof = np.zeros((len(train), len(outputs)))
    test_pred = np.zeros((len(test), len(outputs)))
    gain = pd.Series(0.0, index=train.columns)
    fold_ids = np.unique(folds)
    progress = Progress(len(outputs) * len(fold_ids) * stack.seeds, "stack", unit="boosters")
    for j, output in enumerate(outputs):
        for fold in fold_ids:
            inside = folds != fold
            held_out = np.flatnonzero(~inside)
            for s in range(stack.seeds):
                path = out / f"{output}.fold{fold}.seed{s}.txt"
                target = np.where(inside, targets[:, j], np.nan)
                booster = train_booster(train, target, stack, seed + 1000 * s + fold, threads, path)
                oof[held_out, j] += booster.predict(train.iloc[held_out]) / stack.seeds
                test_pred[:, j] += booster.predict(test) / (stack.seeds * len(fold_ids))
                gain += booster.feature_importance("gain") / len(outputs)
                progress.advance(1)
    progress.close()
    return oof, test_pred, gain.sort_values(ascending=False).to_dict()
