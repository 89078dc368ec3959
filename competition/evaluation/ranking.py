"""Rank and count metrics of the recent competitions, in NumPy.

- `weighted_column_auc`: Intracranial Aneurysm 2025 (ROC AUC per column,
  averaged with weight 13 for `Aneurysm Present` and 1 per location).
- `partial_auc`: ISIC 2024 (the ROC curve's area above a true-positive rate
  of 80%, raw: from 0 to 0.2).
- `balanced_accuracy`: the mean recall over the classes present (ISIC 2019).

A missing label is NaN in `y_true` and is left out of its column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from competition.evaluation.arrays import paired


def _roc(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve's (false-positive rate, true-positive rate) points, ties
    merged, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="mergesort")
    truth, scores = truth[order], scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_pos = np.cumsum(truth)[last_of_tie]
    false_pos = (last_of_tie + 1) - true_pos
    fpr = np.r_[0.0, false_pos / false_pos[-1]]
    tpr = np.r_[0.0, true_pos / true_pos[-1]]
    return fpr, tpr


def _defined(truth: np.ndarray) -> bool:
    return 0 < truth.sum() < len(truth)


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr = _roc(truth, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def weighted_column_auc(y_true, y_pred, weights: Sequence[float]) -> float:
    """The columns' ROC AUCs averaged with `weights`. A column whose labelled
    rows hold a single class has no AUC: it is left out and the weights of
    the others renormalised (a fold without a rare location still scores);
    an error when no column has one."""
    y_true, y_pred = paired(y_true, y_pred)
    weights = np.asarray(weights, np.float64)
    if weights.shape != (y_true.shape[1],):
        raise ValueError(f"expected {y_true.shape[1]} weights. Received: {len(weights)}")
    aucs, used = [], []
    for k in range(y_true.shape[1]):
        known = ~np.isnan(y_true[:, k])
        truth = y_true[known, k]
        if _defined(truth):
            aucs.append(_auc(truth, y_pred[known, k]))
            used.append(weights[k])
    if not aucs:
        raise ValueError("ROC AUC is undefined for every column: each holds a single class")
    return float(np.dot(aucs, used) / np.sum(used))


def _area_above(fpr: np.ndarray, tpr: np.ndarray, min_tpr: float) -> float:
    """The area between the ROC curve and the line TPR = min_tpr, where the
    curve is above it (each segment linear, cut where it crosses)."""
    total = 0.0
    for f0, f1, t0, t1 in zip(fpr[:-1], fpr[1:], tpr[:-1], tpr[1:], strict=True):
        h0, h1 = t0 - min_tpr, t1 - min_tpr
        if h0 >= 0 and h1 >= 0:
            total += (f1 - f0) * (h0 + h1) / 2
        elif h0 < 0 <= h1 or h1 < 0 <= h0:
            above = max(h0, h1)
            total += (f1 - f0) * above / (abs(h0) + abs(h1)) * above / 2
    return total


def partial_auc(y_true, y_pred, min_tpr: float = 0.8, **_) -> float:
    """ISIC 2024's metric: the area under the ROC curve and above the
    true-positive rate `min_tpr`, from 0 to 1 - min_tpr."""
    y_true, y_pred = paired(y_true, y_pred)
    if y_true.shape[1] != 1:
        raise ValueError(f"partial AUC scores one column. Received: {y_true.shape[1]}")
    known = ~np.isnan(y_true[:, 0])
    truth, scores = y_true[known, 0], y_pred[known, 0]
    if not _defined(truth):
        raise ValueError("partial AUC is undefined: the labels hold a single class")
    return float(_area_above(*_roc(truth, scores), min_tpr))


def balanced_accuracy(y_true, y_pred, **_) -> float:
    """The mean over the true classes of the share predicted right: classes
    by argmax of one-hot truth and probabilities (several columns), or
    probabilities cut at 0.5 (one column)."""
    y_true, y_pred = paired(y_true, y_pred)
    labelled = ~np.isnan(y_true).any(axis=1)
    y_true, y_pred = y_true[labelled], y_pred[labelled]
    if y_true.shape[1] > 1:
        truth, predicted = y_true.argmax(axis=1), y_pred.argmax(axis=1)
    else:
        truth, predicted = (y_true[:, 0] > 0.5).astype(int), (y_pred[:, 0] >= 0.5).astype(int)
    if not len(truth):
        raise ValueError("balanced accuracy has no labelled row to score")
    recalls = [np.mean(predicted[truth == c] == c) for c in np.unique(truth)]
    return float(np.mean(recalls))
