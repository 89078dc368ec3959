"""The competition metric: weighted multi-label log loss (weights 1 for each
subtype, 2 for `any`, normalised by their sum), in NumPy for scoring and as a
Keras loss and metric for training."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from competition.labels import SUBTYPES, WEIGHTS

EPS = 1e-7


def weighted_log_loss(y_true: np.ndarray, y_pred: np.ndarray, eps: float = EPS) -> float:
    """Arrays [N, 6] in SUBTYPES order -> the competition's score (lower is better)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.clip(np.asarray(y_pred, dtype=np.float64), eps, 1 - eps)
    if y_true.shape != y_pred.shape or y_true.shape[-1] != len(SUBTYPES):
        raise ValueError(f"expected two [N, 6] arrays. Received: {y_true.shape} and {y_pred.shape}")
    per_class = -(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred)).mean(axis=0)
    return float(np.dot(per_class, WEIGHTS) / np.sum(WEIGHTS))


def per_class_log_loss(y_true: np.ndarray, y_pred: np.ndarray, eps: float = EPS) -> dict:
    y_pred = np.clip(np.asarray(y_pred, dtype=np.float64), eps, 1 - eps)
    losses = -(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred)).mean(axis=0)
    return dict(zip(SUBTYPES, map(float, losses), strict=True))


def per_class_auc(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """ROC AUC per subtype; None where the column has a single class."""
    from sklearn.metrics import roc_auc_score

    return {
        name: float(roc_auc_score(y_true[:, k], y_pred[:, k]))
        if 0 < y_true[:, k].sum() < len(y_true)
        else None
        for k, name in enumerate(SUBTYPES)
    }


def _weighted_bce_per_sample(y_true, y_pred):
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.clip(ops.cast(y_pred, "float32"), EPS, 1 - EPS)
    bce = -(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))
    weights = ops.convert_to_tensor(np.asarray(WEIGHTS, dtype=np.float32))
    return ops.sum(bce * weights, axis=-1) / float(np.sum(WEIGHTS))


@keras.saving.register_keras_serializable(package="competition")
class WeightedBCE(keras.losses.Loss):
    """Training loss: the competition metric per sample (multi-label; Keras'
    class_weight would take the argmax of the row, wrong here)."""

    def __init__(self, name="weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return _weighted_bce_per_sample(y_true, y_pred)


@keras.saving.register_keras_serializable(package="competition")
class WeightedLogLoss(keras.metrics.Mean):
    """The competition metric over everything seen since the last reset."""

    def __init__(self, name="weighted_log_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_weighted_bce_per_sample(y_true, y_pred), sample_weight)
