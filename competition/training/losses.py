"""The task's training loss and the Keras twins of its metric.

The model has one output tensor: the heads' outputs side by side on its
last axis (see TaskSpec.head_slices): (batch, outputs) for the CNN, (batch,
slices, outputs) for the sequence model. The loss sums the heads' losses, each on its slice:
binary cross-entropy averaged with the head's per-column weights (sigmoid
heads: RSNA's metric itself for its head), cross-entropy weighted by the
true class's weight (multiclass), squared error of the class position
(ordinal). Keras' `class_weight` would take the argmax of a multi-label
row, which is wrong here.

The metric twins stream over batches, so `val_<metric>` is in the logs for
checkpoints and early stopping: the weighted log loss exactly, ROC AUC as
Keras approximates it (200 thresholds).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from competition.task import TaskSpec

EPS = 1e-7


def _bce(y_true, y_pred):
    y_pred = ops.clip(y_pred, EPS, 1 - EPS)
    return -(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))


def head_loss(kind: str, y_true, y_pred, weights):
    """Per-sample loss of one head on its slice of the outputs."""
    weights = ops.convert_to_tensor(np.asarray(weights, dtype=np.float32))
    if kind in ("multilabel", "binary"):
        return ops.sum(_bce(y_true, y_pred) * weights, axis=-1) / ops.sum(weights)
    if kind == "multiclass":
        cross_entropy = -ops.sum(y_true * ops.log(ops.clip(y_pred, EPS, 1.0)), axis=-1)
        return cross_entropy * ops.sum(y_true * weights, axis=-1)
    return ops.sum(weights * ops.square(y_true - y_pred), axis=-1)  # ordinal


def head_specs(task: TaskSpec) -> list[list]:
    """[kind, start, stop, weights] per head: what the loss needs, serializable."""
    return [
        [head.kind, part.start, part.stop, head.weights.tolist()]
        for head, part in task.head_slices()
    ]


@keras.saving.register_keras_serializable(package="competition")
class TaskLoss(keras.losses.Loss):
    """The sum of the heads' losses (see the module)."""

    def __init__(self, heads, name="task_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.heads = [list(h) for h in heads]

    def call(self, y_true, y_pred):
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        total = 0.0
        for kind, start, stop, weights in self.heads:
            total = total + head_loss(
                kind, y_true[..., start:stop], y_pred[..., start:stop], weights
            )
        return total

    def get_config(self):
        return {**super().get_config(), "heads": self.heads}


@keras.saving.register_keras_serializable(package="competition")
class HeadLogLoss(keras.metrics.Mean):
    """Binary log loss of one head's columns, averaged with `weights`, over
    everything seen since the last reset (the weighted log loss, exactly)."""

    def __init__(self, start, stop, weights, name="weighted_log_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.start, self.stop, self.weights_ = int(start), int(stop), list(weights)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")[..., self.start : self.stop]
        y_pred = ops.cast(y_pred, "float32")[..., self.start : self.stop]
        per_sample = head_loss("multilabel", y_true, y_pred, self.weights_)
        return super().update_state(per_sample, sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "start": self.start,
            "stop": self.stop,
            "weights": self.weights_,
        }


@keras.saving.register_keras_serializable(package="competition")
class HeadAUC(keras.metrics.AUC):
    """Keras' ROC AUC on one head's columns (their mean for several)."""

    def __init__(self, start, stop, name="roc_auc", **kwargs):
        kwargs.setdefault("multi_label", stop - start > 1)
        super().__init__(name=name, **kwargs)
        self.start, self.stop = int(start), int(stop)

    def update_state(self, y_true, y_pred, sample_weight=None):
        # (batch, [steps,] outputs) -> rows: a sequence model's steps are rows too
        width = self.stop - self.start
        y_true = ops.reshape(y_true[..., self.start : self.stop], (-1, width))
        y_pred = ops.reshape(y_pred[..., self.start : self.stop], (-1, width))
        if sample_weight is not None:
            sample_weight = ops.reshape(sample_weight, (-1,))
        return super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.pop("num_labels", None)
        return {**config, "start": self.start, "stop": self.stop}


def metric_twin(task: TaskSpec) -> keras.metrics.Metric | None:
    """The streaming Keras version of the task's metric, named as the metric
    (Keras logs it as val_<name>), or None when it has none."""
    part = task.head_slice(task.metric_head.name)
    name = task.metric.name
    if name in ("weighted_log_loss", "log_loss"):
        weights = task.metric_weights or [1.0] * (part.stop - part.start)
        return HeadLogLoss(part.start, part.stop, weights, name=name)
    if name in ("roc_auc", "mean_column_auc"):
        return HeadAUC(part.start, part.stop, name=name)
    return None


def compile_args(task: TaskSpec) -> dict:
    twin = metric_twin(task)
    return {"loss": TaskLoss(head_specs(task)), "metrics": [twin] if twin is not None else []}
