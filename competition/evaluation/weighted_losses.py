"""The log losses of RSNA's 2022-2024 competitions, whose weights depend on
the true label, in NumPy.

- `label_weighted_log_loss`: Cervical Spine Fracture 2022. Per unit, the
  binary log losses of its labels weighted by the label's truth (7 and 14 for
  `patient_overall`, 1 and 2 for C1-C7), normalised by the unit's weight sum;
  the mean over units.
- `grouped_log_loss`: Abdominal Trauma 2023 and Lumbar Spine 2024. Each
  group pools the softmax heads it names (a 3-way organ, or the five levels
  of one condition) into one scikit-learn style log loss: each row's
  probabilities renormalised to sum to 1, weighted by the true class's
  weight. An optional derived term (AnyOf) makes a binary label and prediction
  from the members (`any_injury`: max of 1 - p(healthy); `any_severe_spinal`:
  max of p(severe)). The score is the mean of the group losses and that term.

Arrays are (units, columns) in the model's output order; a softmax head
owns a slice of columns (its classes). A missing label is NaN in `y_true`
(a whole slice NaN for a softmax head) and is left out of the loss and of
its weights, as the competitions' solution files leave such rows out.
Predictions are clipped to [1e-15, 1 - 1e-15], scikit-learn's clip when
these competitions ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from competition.evaluation.arrays import paired

CLIP = 1e-15


def _binary_log_loss(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    p = np.clip(y_pred, CLIP, 1 - CLIP)
    return -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))


def _weighted_mean(losses: np.ndarray, weights: np.ndarray, what: str) -> float:
    if weights.sum() <= 0:
        raise ValueError(f"{what} has no labelled unit to score")
    return float(np.dot(losses, weights) / weights.sum())


def label_weighted_log_loss(
    y_true, y_pred, negative_weights: Sequence[float], positive_weights: Sequence[float]
) -> float:
    """Cervical Spine 2022's metric (see the module): each unit's labels
    weighted by their truth and normalised per unit, then the mean over
    units. A unit with every label missing is left out."""
    y_true, y_pred = paired(y_true, y_pred)
    negative = np.asarray(negative_weights, np.float64)
    positive = np.asarray(positive_weights, np.float64)
    if negative.shape != (y_true.shape[1],) or positive.shape != negative.shape:
        raise ValueError(
            f"expected {y_true.shape[1]} negative and positive weights, one per column. "
            f"Received: {len(negative)} and {len(positive)}"
        )
    known = ~np.isnan(y_true)
    truth = np.where(known, y_true, 0.0)
    weights = np.where(known, truth * positive + (1 - truth) * negative, 0.0)
    losses = np.where(known, _binary_log_loss(truth, y_pred), 0.0)
    per_unit_weight = weights.sum(axis=1)
    scored = per_unit_weight > 0
    if not scored.any():
        raise ValueError("the label-weighted log loss has no labelled unit to score")
    per_unit = (losses * weights).sum(axis=1)[scored] / per_unit_weight[scored]
    return float(per_unit.mean())


@dataclass(frozen=True)
class SoftmaxGroup:
    """Softmax heads scored as one log loss (a 3-way organ; the five levels
    of one condition): each member is the slice of columns of one head, all
    with the same classes, weighted by `class_weights` of the true class."""

    name: str
    members: tuple[slice, ...]
    class_weights: tuple[float, ...]


@dataclass(frozen=True)
class AnyOf:
    """A binary label derived from softmax heads, scored as one more log loss.

    Per unit, over its labelled members: the label is whether some member's
    true class is an event, the prediction the largest event probability.
    An event is every class but `absent_class` (`any_injury`: 1 - p(healthy)),
    or `event_class` itself (`any_severe_spinal`: p(severe)). The weight is
    `weights[label]` when given (`any_injury`: 1 and 6), otherwise the largest
    class weight among the unit's member labels (`any_severe_spinal`).
    `normalised`: the event probability from the renormalised rows (Abdominal)
    or the raw predictions (Lumbar)."""

    name: str
    members: tuple[slice, ...]
    class_weights: tuple[tuple[float, ...], ...]  # per member: its classes' weights
    absent_class: int | None = None
    event_class: int | None = None
    weights: tuple[float, float] | None = None
    normalised: bool = True


def _rows(y_true: np.ndarray, y_pred: np.ndarray, member: slice):
    """A member head's labelled rows: their unit index, true class, and
    predictions renormalised to sum to 1 and clipped."""
    truth, pred = y_true[:, member], y_pred[:, member]
    labelled = ~np.isnan(truth).any(axis=1)
    totals = pred.sum(axis=1, keepdims=True)
    if (totals[labelled] <= 0).any():
        raise ValueError(f"predictions of columns {member.start}:{member.stop} sum to 0 on a row")
    normalised = np.clip(pred / np.where(totals > 0, totals, 1.0), CLIP, 1 - CLIP)
    return np.flatnonzero(labelled), truth[labelled].argmax(axis=1), normalised[labelled]


def _group_loss(y_true: np.ndarray, y_pred: np.ndarray, group: SoftmaxGroup) -> float:
    weights, losses = [], []
    class_weights = np.asarray(group.class_weights, np.float64)
    for member in group.members:
        _, classes, probabilities = _rows(y_true, y_pred, member)
        weights.append(class_weights[classes])
        losses.append(-np.log(probabilities[np.arange(len(classes)), classes]))
    return _weighted_mean(np.concatenate(losses), np.concatenate(weights), group.name)


def _any_of_loss(y_true: np.ndarray, y_pred: np.ndarray, any_of: AnyOf) -> float:
    units = len(y_true)
    label = np.full(units, -np.inf)
    predicted = np.full(units, -np.inf)
    top_weight = np.full(units, -np.inf)
    for member, class_weights in zip(any_of.members, any_of.class_weights, strict=True):
        rows, classes, probabilities = _rows(y_true, y_pred, member)
        raw = y_pred[rows, member]
        source = probabilities if any_of.normalised else raw
        if any_of.event_class is not None:
            event, p_event = classes == any_of.event_class, source[:, any_of.event_class]
        else:
            event, p_event = classes != any_of.absent_class, 1 - source[:, any_of.absent_class]
        label[rows] = np.maximum(label[rows], event.astype(np.float64))
        predicted[rows] = np.maximum(predicted[rows], p_event)
        top_weight[rows] = np.maximum(top_weight[rows], np.asarray(class_weights)[classes])
    scored = np.isfinite(label)
    label, predicted = label[scored], predicted[scored]
    if any_of.weights is not None:
        weights = np.where(label > 0, any_of.weights[1], any_of.weights[0])
    else:
        weights = top_weight[scored]
    return _weighted_mean(_binary_log_loss(label, predicted), weights, any_of.name)


def group_losses(
    y_true, y_pred, groups: Sequence[SoftmaxGroup], any_of: AnyOf | None = None
) -> dict[str, float]:
    """Each group's log loss (and the derived AnyOf term's), by name."""
    y_true, y_pred = paired(y_true, y_pred)
    losses = {group.name: _group_loss(y_true, y_pred, group) for group in groups}
    if any_of is not None:
        losses[any_of.name] = _any_of_loss(y_true, y_pred, any_of)
    return losses


def grouped_log_loss(
    y_true, y_pred, groups: Sequence[SoftmaxGroup], any_of: AnyOf | None = None
) -> float:
    """Abdominal Trauma 2023's and Lumbar Spine 2024's metric (see the
    module): the mean of the groups' log losses and the AnyOf term's."""
    return float(np.mean(list(group_losses(y_true, y_pred, groups, any_of).values())))
