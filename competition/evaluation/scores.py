"""Predictions scored for a task (NumPy): the competition metric on its
head, the same metric for a constant prediction (the baseline a model must
beat), and per output the log loss and ROC AUC of probability outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from competition.evaluation.metrics import column_auc, column_log_loss
from competition.task import TaskSpec


def probability_outputs(task: TaskSpec) -> list[int]:
    """Indices of the outputs that are probabilities of one class."""
    return [
        i
        for head, part in task.head_slices()
        if head.probabilities
        for i in range(part.start, part.stop)
    ]


def per_output(task: TaskSpec, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """{output: {log_loss, auc}} for the probability outputs."""
    columns = probability_outputs(task)
    if not columns:
        return {}
    names = [task.outputs[i] for i in columns]
    losses = column_log_loss(y_true[:, columns], y_pred[:, columns])
    aucs = column_auc(y_true[:, columns], y_pred[:, columns])
    return {
        name: {"log_loss": float(loss), "auc": auc}
        for name, loss, auc in zip(names, losses, aucs, strict=True)
    }


def _safe_score(task: TaskSpec, y_true, y_pred, thresholds=None) -> float | None:
    """The metric, or None where it is undefined (an AUC over one class)."""
    try:
        return float(task.score(y_true, y_pred, thresholds))
    except ValueError:
        return None


def reduce_rows(values: np.ndarray, groups, how: str) -> np.ndarray:
    """One row per group (in order of first appearance): `how` (mean, max) of its rows."""
    frame = pd.DataFrame(values).groupby(np.asarray(groups), sort=False)
    return (frame.max() if how == "max" else frame.mean()).to_numpy()


def score_groups(task: TaskSpec, rows: pd.DataFrame) -> np.ndarray | None:
    """The unit the metric scores (task.metric.group_by), one key per row."""
    if not task.metric.group_by:
        return None
    return rows[task.metric.group_by].astype(str).agg("_".join, axis=1).to_numpy()


def score(task: TaskSpec, y_true, y_pred, constant=None, groups=None, thresholds=None) -> dict:
    """The metric for the predictions and for a constant prediction
    (`constant`, default the truth's mean: the prevalence baseline). With
    `groups` (task.metric.group_by), rows are first reduced to one per group:
    the labels' max, the predictions as the submission reduces them."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    constant = y_true.mean(axis=0) if constant is None else np.asarray(constant, np.float64)
    found = {"images": len(y_true), "per_output": per_output(task, y_true, y_pred)}
    if groups is not None:
        y_true = reduce_rows(y_true, groups, "max")
        y_pred = reduce_rows(y_pred, groups, task.submission.reduce.how)
        found["groups"] = len(y_true)
    baseline = np.broadcast_to(constant, y_true.shape)
    return {
        **found,
        "metric": task.metric.name,
        "lower_is_better": task.lower_is_better,
        "score": _safe_score(task, y_true, y_pred, thresholds),
        "baseline_score": _safe_score(task, y_true, baseline, thresholds),
    }


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
