"""Combining the folds' predictions (NumPy): (N, folds, outputs) -> (N, outputs)."""

from __future__ import annotations

import numpy as np


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def mean(per_fold: np.ndarray) -> np.ndarray:
    """Mean of the folds' values (probabilities or regression outputs)."""
    return per_fold.mean(axis=1)


def geometric(per_fold: np.ndarray) -> np.ndarray:
    """Geometric mean of the odds (the mean logit): symmetric in p and 1 - p,
    unlike a geometric mean of p. For probabilities only."""
    return 1 / (1 + np.exp(-_logit(per_fold).mean(axis=1)))


def rank(per_fold: np.ndarray) -> np.ndarray:
    """Order by the folds' mean rank, valued by the sorted mean values: rank
    averaging without losing calibration (log loss needs probabilities)."""
    from scipy.stats import rankdata

    order_key = rankdata(per_fold, axis=0).mean(axis=1)  # (N, outputs)
    values = np.sort(per_fold.mean(axis=1), axis=0)
    out = np.empty_like(values)
    for k in range(per_fold.shape[-1]):
        out[np.argsort(order_key[:, k], kind="stable"), k] = values[:, k]
    return out


ENSEMBLE_METHODS = {"mean": mean, "geometric": geometric, "rank": rank}
# Methods that treat every output as a probability.
PROBABILITY_ONLY = frozenset({"geometric"})


def combine_folds(per_fold: np.ndarray, method: str) -> np.ndarray:
    """(N, folds, outputs) -> (N, outputs) with one of ENSEMBLE_METHODS."""
    return ENSEMBLE_METHODS[method](per_fold)
