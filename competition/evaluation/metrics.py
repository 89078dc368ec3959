"""Competition metrics in NumPy (scikit-learn where it has them), by name.

A task names its metric (`task.metric.name`) and the head it scores; the
registry says which head kinds a metric fits, whether lower is better, and
whether training can watch it in Keras (`competition.training.losses` has
the streaming twins). Arrays are (N, columns) in the head's output order; a
`whole_task` metric (grouped_log_loss) scores every head's outputs with the
task's softmax groups. The recent competitions' metrics live in
`weighted_losses` and `ranking`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from competition.evaluation.ranking import balanced_accuracy, partial_auc, weighted_column_auc
from competition.evaluation.weighted_losses import grouped_log_loss, label_weighted_log_loss

EPS = 1e-7


def _as_2d(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(len(array), -1)


def _check_shapes(y_true: np.ndarray, y_pred: np.ndarray, columns: int | None = None) -> None:
    if y_true.shape != y_pred.shape or (columns is not None and y_true.shape[1] != columns):
        wanted = f"(N, {columns})" if columns is not None else "the same (N, columns)"
        raise ValueError(
            f"expected two arrays of shape {wanted}. Received: {y_true.shape} and {y_pred.shape}"
        )


def column_log_loss(y_true, y_pred, eps: float = EPS) -> np.ndarray:
    """Binary log loss of each column (predictions clipped to [eps, 1 - eps])."""
    y_true, y_pred = _as_2d(y_true), np.clip(_as_2d(y_pred), eps, 1 - eps)
    _check_shapes(y_true, y_pred)
    return -(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred)).mean(axis=0)


def weighted_log_loss(y_true, y_pred, weights: Sequence[float] | None = None, **_) -> float:
    """The columns' binary log losses averaged with `weights` (default equal):
    RSNA Intracranial Hemorrhage's metric with its weights."""
    losses = column_log_loss(y_true, y_pred)
    weights = np.ones(len(losses)) if weights is None else np.asarray(weights, np.float64)
    if weights.shape != losses.shape:
        raise ValueError(f"expected {len(losses)} weights. Received: {len(weights)}")
    return float(np.dot(losses, weights) / weights.sum())


def log_loss(y_true, y_pred, weights: Sequence[float] | None = None, **_) -> float:
    """Mean binary log loss over the columns (the unweighted case)."""
    return weighted_log_loss(y_true, y_pred)


def column_auc(y_true, y_pred) -> list[float | None]:
    """ROC AUC of each column; None where the column holds a single class."""
    from sklearn.metrics import roc_auc_score

    y_true, y_pred = _as_2d(y_true), _as_2d(y_pred)
    _check_shapes(y_true, y_pred)
    return [
        float(roc_auc_score(y_true[:, k], y_pred[:, k]))
        if 0 < y_true[:, k].sum() < len(y_true)
        else None
        for k in range(y_true.shape[1])
    ]


def _defined_aucs(y_true, y_pred) -> list[float]:
    aucs = column_auc(y_true, y_pred)
    if any(a is None for a in aucs):
        single = [k for k, a in enumerate(aucs) if a is None]
        raise ValueError(
            f"ROC AUC is undefined for column(s) {single}: they hold a single class "
            "(every label 0, or every label 1)"
        )
    return aucs


def roc_auc(y_true, y_pred, **_) -> float:
    """ROC AUC of one binary column."""
    (auc,) = _defined_aucs(y_true, y_pred)
    return auc


def mean_column_auc(y_true, y_pred, **_) -> float:
    """The mean of the columns' ROC AUCs."""
    return float(np.mean(_defined_aucs(y_true, y_pred)))


def class_positions(y_true, y_pred, thresholds: Sequence[float] | None = None):
    """(true, predicted) class positions of a multiclass head (one-hot and
    probabilities: argmax) or an ordinal one (the regression value cut by
    `thresholds`, by default half-way between positions)."""
    y_true, y_pred = _as_2d(y_true), _as_2d(y_pred)
    _check_shapes(y_true, y_pred)
    if y_true.shape[1] > 1:
        return y_true.argmax(axis=1), y_pred.argmax(axis=1)
    truth = np.rint(y_true[:, 0]).astype(int)
    if thresholds is None:  # the nearest position
        return truth, np.maximum(np.rint(y_pred[:, 0]), 0).astype(int)
    return truth, np.searchsorted(np.asarray(thresholds, np.float64), y_pred[:, 0])


def quadratic_kappa(y_true, y_pred, thresholds: Sequence[float] | None = None, **_) -> float:
    """Cohen's kappa with quadratic weights (APTOS 2019) between the true and
    the predicted classes (see class_positions). Undefined, and an error,
    when truth and predictions are one and the same single class."""
    from sklearn.metrics import cohen_kappa_score

    truth, predicted = class_positions(y_true, y_pred, thresholds)
    if len(np.union1d(truth, predicted)) < 2:
        raise ValueError(
            "quadratic kappa is undefined when the truth and the predictions are all the "
            f"same class ({int(truth[0])})"
        )
    return float(cohen_kappa_score(truth, predicted, weights="quadratic"))


def pf1(y_true, y_pred, **_) -> float:
    """Probabilistic F1 (RSNA Screening Mammography 2023): predictions
    clipped to [0, 1]; ctp = sum of p over positives, cfp = over negatives;
    precision = ctp / (ctp + cfp), recall = ctp / positives. Without a
    positive label it is undefined (an error); predictions all 0 score 0,
    as the competition's code scores a zero precision or recall."""
    y_true, y_pred = _as_2d(y_true), np.clip(_as_2d(y_pred), 0, 1)
    _check_shapes(y_true, y_pred, columns=1)
    positives = y_true[:, 0] > 0.5
    if not positives.any():
        raise ValueError("pF1 is undefined without a positive label (its recall divides by 0)")
    ctp, cfp = float(y_pred[positives, 0].sum()), float(y_pred[~positives, 0].sum())
    if ctp == 0:
        return 0.0
    precision, recall = ctp / (ctp + cfp), ctp / int(positives.sum())
    return 2 * precision * recall / (precision + recall)


def _label_weighted(y_true, y_pred, label_weights=None, **_) -> float:
    """label_weighted_log_loss with a head's (0-label, 1-label) weights (default 1s)."""
    columns = np.shape(y_true)[1]
    negative, positive = label_weights or (np.ones(columns), np.ones(columns))
    return label_weighted_log_loss(y_true, y_pred, negative, positive)


def _grouped(y_true, y_pred, groups=(), any_of=None, **_) -> float:
    return grouped_log_loss(y_true, y_pred, groups, any_of)


def _weighted_auc(y_true, y_pred, weights=None, **_) -> float:
    return weighted_column_auc(y_true, y_pred, weights or [1.0] * np.shape(y_true)[1])


def _partial_auc(y_true, y_pred, min_tpr=0.8, **_) -> float:
    return partial_auc(y_true, y_pred, min_tpr)


@dataclass(frozen=True)
class Metric:
    score: Callable[..., float]
    kinds: frozenset[str]  # head kinds it can score
    lower_is_better: bool
    in_keras: bool  # training can monitor it (a streaming twin exists)
    weighted: bool = False  # takes per-column weights
    single_column: bool = False
    whole_task: bool = False  # scores every head's outputs (the task's softmax groups)


SIGMOID = frozenset({"multilabel", "binary"})
METRICS: dict[str, Metric] = {
    "weighted_log_loss": Metric(weighted_log_loss, SIGMOID, True, True, weighted=True),
    "log_loss": Metric(log_loss, SIGMOID, True, True),
    "roc_auc": Metric(roc_auc, frozenset({"binary"}), False, True, single_column=True),
    "mean_column_auc": Metric(mean_column_auc, SIGMOID, False, True),
    "quadratic_kappa": Metric(quadratic_kappa, frozenset({"ordinal", "multiclass"}), False, False),
    "pf1": Metric(pf1, frozenset({"binary"}), False, False, single_column=True),
    "label_weighted_log_loss": Metric(_label_weighted, SIGMOID, True, True),
    "grouped_log_loss": Metric(_grouped, frozenset({"multiclass"}), True, True, whole_task=True),
    "weighted_column_auc": Metric(_weighted_auc, SIGMOID, False, True, weighted=True),
    "partial_auc": Metric(_partial_auc, frozenset({"binary"}), False, False, single_column=True),
    "balanced_accuracy": Metric(
        balanced_accuracy, frozenset({"binary", "multiclass"}), False, False
    ),
}
METRIC_NAMES = tuple(METRICS)
