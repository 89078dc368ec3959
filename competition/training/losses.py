"""The task's training loss and the Keras twins of its metric.

The model has one output tensor: the heads' outputs side by side on its
last axis (see TaskSpec.head_slices): (batch, outputs) for the CNN, (batch,
slices, outputs) for the sequence model. The loss sums the heads' losses, each on its slice:
binary cross-entropy averaged with the head's per-column weights (sigmoid
heads: RSNA's metric itself for its head; with `positive_weights` the weight
depends on the label and the average is per sample, Cervical Spine's metric
itself), cross-entropy weighted by the true class's weight (multiclass; the
mean over a head's softmaxes when it has one per column), squared error of
the class position (ordinal). A missing label (NaN) is left out of the loss
and its weights. Keras' `class_weight` would take the argmax of a
multi-label row, which is wrong here.

The metric twins stream over batches, so `val_<metric>` is in the logs for
checkpoints and early stopping: the weighted log losses exactly (the grouped
one up to float32 clipping), ROC AUC as Keras approximates it (200
thresholds).
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


def _known(y_true):
    """(labels with the missing ones at 0, 1 where a label is known): a
    missing label is NaN and is left out of every loss and weight."""
    known = ops.logical_not(ops.isnan(y_true))
    return ops.where(known, y_true, 0.0), ops.cast(known, "float32")


def _rows(values, start: int, stop: int):
    """(batch, [steps,] outputs) -> the rows of one slice: a step is a row too."""
    return ops.reshape(ops.cast(values, "float32")[..., start:stop], (-1, stop - start))


def head_loss(
    kind: str, y_true, y_pred, weights, positive_weights=None, softmax_width=None, smoothing=0.0
):
    """Per-sample loss of one head on its slice of the outputs (see the
    module); `smoothing` pulls the targets (not the label-dependent weights)
    towards uniform: y (1 - e) + e / classes."""
    y_true, known = _known(y_true)
    weights = ops.convert_to_tensor(np.asarray(weights, dtype=np.float32))
    if kind in ("multilabel", "binary"):
        if positive_weights is not None:  # the weight depends on the label
            positive = ops.convert_to_tensor(np.asarray(positive_weights, dtype=np.float32))
            weights = y_true * positive + (1 - y_true) * weights
        weights = weights * known
        target = y_true * (1 - smoothing) + smoothing / 2
        total = ops.sum(_bce(target, y_pred) * weights, axis=-1)
        return total / ops.maximum(ops.sum(weights, axis=-1), EPS)
    if kind == "multiclass":  # each softmax: cross-entropy x the true class's weight
        width = softmax_width or y_true.shape[-1]
        losses = []
        for start in range(0, y_true.shape[-1], width):
            truth, p = y_true[..., start : start + width], y_pred[..., start : start + width]
            target = truth * (1 - smoothing) + smoothing / width
            cross_entropy = -ops.sum(target * ops.log(ops.clip(p, EPS, 1.0)), axis=-1)
            losses.append(cross_entropy * ops.sum(truth * weights, axis=-1))
        return losses[0] if len(losses) == 1 else ops.mean(ops.stack(losses, axis=-1), axis=-1)
    return ops.sum(weights * known * ops.square(y_true - y_pred), axis=-1)  # ordinal


def head_specs(task: TaskSpec, smoothing: dict[str, float] | None = None) -> list[list]:
    """[kind, start, stop, weights, positive weights, softmax width, label
    smoothing] per head: what the loss needs, serializable."""
    smoothing = smoothing or {}
    return [
        [
            head.kind,
            part.start,
            part.stop,
            head.weights.tolist(),
            head.positive_weights,
            head.class_count or None,
            float(smoothing.get(head.kind, 0.0)),
        ]
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
        for kind, start, stop, weights, *more in self.heads:  # older checkpoints: 4 items
            total = total + head_loss(
                kind, y_true[..., start:stop], y_pred[..., start:stop], weights, *more
            )
        return total

    def get_config(self):
        return {**super().get_config(), "heads": self.heads}


@keras.saving.register_keras_serializable(package="competition")
class HeadLogLoss(keras.metrics.Mean):
    """Binary log loss of one head's columns, averaged with `weights`, over
    everything seen since the last reset (the weighted log loss, exactly)."""

    def __init__(
        self, start, stop, weights, positive_weights=None, name="weighted_log_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.start, self.stop, self.weights_ = int(start), int(stop), list(weights)
        self.positive_weights = None if positive_weights is None else list(positive_weights)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")[..., self.start : self.stop]
        y_pred = ops.cast(y_pred, "float32")[..., self.start : self.stop]
        per_sample = head_loss("multilabel", y_true, y_pred, self.weights_, self.positive_weights)
        labelled = ops.max(_known(y_true)[1], axis=-1)  # a unit without labels is left out
        weight = labelled if sample_weight is None else labelled * sample_weight
        return super().update_state(per_sample, weight)

    def get_config(self):
        return {
            **super().get_config(),
            "start": self.start,
            "stop": self.stop,
            "weights": self.weights_,
            "positive_weights": self.positive_weights,
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
        y_true, known = _known(_rows(y_true, self.start, self.stop))
        y_pred = _rows(y_pred, self.start, self.stop)
        labelled = ops.min(known, axis=-1)  # a row missing a label is left out (an approximation)
        if sample_weight is not None:
            labelled = labelled * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        return super().update_state(y_true, y_pred, labelled)

    def get_config(self):
        config = super().get_config()
        config.pop("num_labels", None)
        if config.get("label_weights") is not None:
            config["label_weights"] = [float(w) for w in ops.convert_to_numpy(self.label_weights)]
        return {**config, "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="competition")
class GroupedLogLoss(keras.metrics.Metric):
    """grouped_log_loss streamed (competition.evaluation.weighted_losses): each
    group's weighted loss and weight sums, and the AnyOf term's, over every
    batch since the last reset; exact but for float32's clipping at 1e-7.

    `groups`: [[class weights, [[start, stop], ...]], ...]; `any_of`: null or
    {members, class_weights, absent_class, event_class, weights, normalised}."""

    def __init__(self, groups, any_of=None, name="grouped_log_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.groups = [[list(w), [list(m) for m in members]] for w, members in groups]
        self.any_of = any_of
        terms = len(self.groups) + (any_of is not None)
        self.loss_sums = self.add_variable((terms,), "zeros", name="loss_sums")
        self.weight_sums = self.add_variable((terms,), "zeros", name="weight_sums")

    def _member(self, y_true, y_pred, start, stop, class_weights):
        truth, known = _known(_rows(y_true, start, stop))
        known = ops.min(known, axis=-1)
        p = _rows(y_pred, start, stop)
        normalised = ops.clip(p / ops.maximum(ops.sum(p, -1, keepdims=True), EPS), EPS, 1 - EPS)
        weight = ops.sum(truth * ops.convert_to_tensor(class_weights), axis=-1) * known
        loss = -ops.sum(truth * ops.log(normalised), axis=-1)
        return truth, known, p, normalised, weight, loss

    def _any_term(self, y_true, y_pred):
        spec, found = self.any_of, []
        for (start, stop), class_weights in zip(
            spec["members"], spec["class_weights"], strict=True
        ):
            truth, known, raw, normalised, weight, _ = self._member(
                y_true, y_pred, start, stop, class_weights
            )
            source = normalised if spec["normalised"] else raw
            if spec["event_class"] is not None:
                event, p = truth[:, spec["event_class"]], source[:, spec["event_class"]]
            else:
                event = 1 - truth[:, spec["absent_class"]]
                p = 1 - source[:, spec["absent_class"]]
            found.append((event * known, p * known, weight, known))
        label, p, top, labelled = (ops.max(ops.stack(x, -1), -1) for x in zip(*found, strict=True))
        if spec["weights"] is not None:
            negative, positive = spec["weights"]
            top = (label * positive + (1 - label) * negative) * labelled
        return ops.sum(_bce(label, p) * top), ops.sum(top)

    def update_state(self, y_true, y_pred, sample_weight=None):
        losses, weights = [], []
        for class_weights, members in self.groups:
            parts = [self._member(y_true, y_pred, *m, class_weights) for m in members]
            losses.append(sum(ops.sum(part[5] * part[4]) for part in parts))
            weights.append(sum(ops.sum(part[4]) for part in parts))
        if self.any_of is not None:
            loss, weight = self._any_term(y_true, y_pred)
            losses.append(loss)
            weights.append(weight)
        self.loss_sums.assign_add(ops.stack(losses))
        self.weight_sums.assign_add(ops.stack(weights))

    def result(self):
        return ops.mean(self.loss_sums / ops.maximum(self.weight_sums, EPS))

    def reset_state(self):
        self.loss_sums.assign(ops.zeros_like(self.loss_sums))
        self.weight_sums.assign(ops.zeros_like(self.weight_sums))

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "any_of": self.any_of}


def grouped_twin(task: TaskSpec) -> GroupedLogLoss:
    groups, any_of = task.softmax_groups()
    members = lambda found: [[m.start, m.stop] for m in found]  # noqa: E731
    spec = None
    if any_of is not None:
        spec = {
            "members": members(any_of.members),
            "class_weights": [list(w) for w in any_of.class_weights],
            "absent_class": any_of.absent_class,
            "event_class": any_of.event_class,
            "weights": None if any_of.weights is None else list(any_of.weights),
            "normalised": any_of.normalised,
        }
    found = [[list(g.class_weights), members(g.members)] for g in groups]
    return GroupedLogLoss(found, spec, name=task.metric.name)


def metric_twin(task: TaskSpec) -> keras.metrics.Metric | None:
    """The streaming Keras version of the task's metric, named as the metric
    (Keras logs it as val_<name>), or None when it has none."""
    part = task.head_slice(task.metric_head.name)
    name = task.metric.name
    if name in ("weighted_log_loss", "log_loss"):
        weights = task.metric_weights or [1.0] * (part.stop - part.start)
        return HeadLogLoss(part.start, part.stop, weights, name=name)
    if name == "label_weighted_log_loss":
        head = task.metric_head
        return HeadLogLoss(
            part.start,
            part.stop,
            head.weights.tolist(),
            head.positive_weights or head.weights.tolist(),
            name=name,
        )
    if name == "grouped_log_loss":
        return grouped_twin(task)
    if name in ("roc_auc", "mean_column_auc"):
        return HeadAUC(part.start, part.stop, name=name)
    if name == "weighted_column_auc":
        return HeadAUC(part.start, part.stop, name=name, label_weights=task.metric_weights)
    return None


def compile_args(task: TaskSpec, smoothing: dict[str, float] | None = None) -> dict:
    """The loss (label smoothing by head kind) and the metric's twin (never smoothed)."""
    twin = metric_twin(task)
    loss = TaskLoss(head_specs(task, smoothing))
    return {"loss": loss, "metrics": [twin] if twin is not None else []}
