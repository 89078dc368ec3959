"""Class thresholds of an ordinal head, tuned on out-of-fold predictions.

An ordinal head predicts a class position as a number; cuts turn it into a
class. The default cuts lie half-way between positions; the tuned ones
maximise the quadratic weighted kappa on a fold's validation predictions
(coordinate ascent: each cut in turn over a grid between its neighbours,
a few sweeps; deterministic). The fold saves them (thresholds.json) and
prediction decodes the ensemble's output with the folds' mean cuts. Tuned
on the same rows they are scored on, they flatter that score: a fold
reports its kappa with the default cuts, and the tuned one beside it.
"""

from __future__ import annotations

import numpy as np

from competition.evaluation.metrics import quadratic_kappa

FILE = "thresholds.json"  # a fold's tuned cuts, {head: [cut, ...]}
GRID = 41  # candidate positions of a cut between its neighbours
SWEEPS = 3


def _kappa(truth: np.ndarray, values: np.ndarray, cuts: np.ndarray) -> float:
    try:
        return quadratic_kappa(truth, values, thresholds=cuts)
    except ValueError:  # one class only
        return -1.0


def tune(truth: np.ndarray, values: np.ndarray, classes: int) -> list[float]:
    """Cuts (classes - 1, increasing) that maximise the quadratic kappa of
    `values` (N,) against the true class positions `truth` (N,)."""
    truth = np.asarray(truth, np.float64).reshape(-1, 1)
    values = np.asarray(values, np.float64).reshape(-1, 1)
    cuts = np.arange(classes - 1) + 0.5
    best = _kappa(truth, values, cuts)
    for _ in range(SWEEPS):
        for k in range(len(cuts)):
            low = cuts[k - 1] if k else cuts[k] - 1.0
            high = cuts[k + 1] if k + 1 < len(cuts) else cuts[k] + 1.0
            for candidate in np.linspace(low, high, GRID)[1:-1]:
                trial = cuts.copy()
                trial[k] = candidate
                found = _kappa(truth, values, trial)
                if found > best + 1e-12:
                    best, cuts = found, trial
    return cuts.tolist()


def mean_cuts(per_fold: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Each head's cuts averaged over the folds that saved them."""
    heads = {name for cuts in per_fold for name in cuts}
    return {
        name: np.mean([cuts[name] for cuts in per_fold if name in cuts], axis=0).tolist()
        for name in sorted(heads)
    }
