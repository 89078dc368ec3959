"""The crop classifier of a series kind, and the whole-series model it is
measured against.

Crops: a crop's 2k + 1 slices go through the kit's series model (one
backbone on each slice, attention or a BiGRU over them: a 2.5D CNN + RNN),
whose heads are the kind's heads, each one softmax (the grade of the
crop's point). A crop is labelled only for its own head; the others are
missing (NaN), left out of the loss. Its loss weights are the head's.

Whole series: the same series model over T whole slices of a series
evenly spaced, at preprocess.image_size, with the kind's heads as the task
has them (a softmax per column): what a model that does not localise sees.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from competition.localise.crops import window
from competition.localise.fitting import Batches, fit_and_save, predict
from competition.localise.settings import ClassifierConfig, CropConfig
from competition.task import TaskSpec
from competition.training.losses import TaskLoss, head_specs
from competition.training.series import build_series_model
from competition.training.settings import ModelConfig, SeriesConfig


def point_task(task: TaskSpec, heads: list[str]) -> TaskSpec:
    """The kind's heads as one softmax each: a crop shows one point (a head
    of text classes per column as one column; a one-hot head as it is)."""
    chosen = [
        h if h.onehot else dataclasses.replace(h, columns=[h.name])
        for h in task.heads
        if h.name in heads
    ]
    return dataclasses.replace(task, heads=chosen)


def kind_task(task: TaskSpec, heads: list[str]) -> TaskSpec:
    """The kind's heads as the task has them (the whole-series model)."""
    return dataclasses.replace(task, heads=[h for h in task.heads if h.name in heads])


def network(task: TaskSpec, settings: ClassifierConfig, shape, training_mean,
            weights_dir: str = "weights", compiled: bool = True) -> keras.Model:  # fmt: skip
    """The series model over (T, S, S, 1) stacks; a pretrained backbone
    (weights from `weights_dir`) gets each grey slice copied to its 3
    channels (model.input_adapter repeat). Not `compiled`: what fits is a
    wrapper (with_slice_head), the network saved without an optimizer."""
    adapter = "none" if settings.weights is None or settings.backbone == "tiny_cnn" else "repeat"
    model = build_series_model(
        ModelConfig(
            backbone=settings.backbone,
            weights=settings.weights,
            dropout=settings.dropout,
            input_adapter=adapter,
            weights_dir=weights_dir,
        ),
        SeriesConfig(pooling=settings.pooling, units=settings.units, dropout=settings.dropout),
        tuple(shape),
        task,
        training_mean,
    )
    if compiled:
        model.compile(keras.optimizers.Adam(settings.learning_rate), TaskLoss(head_specs(task)))
    return model


def _training_mean(targets: np.ndarray) -> np.ndarray:
    """Each output's mean over the known targets (0 where none is known: a
    head no crop of this fold is labelled for)."""
    known = ~np.isnan(targets)
    return np.where(known, targets, 0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)


def _crop_batches(crops, targets, crop_settings: CropConfig, batch_size, seed, train: bool):
    """(x, y) batches of crop windows (B, 2k + 1, size, size, 1); jittered when training."""

    def make(rows):
        rng = np.random.default_rng([seed, int(rows[0]), len(rows)]) if train else None
        x = window(crops[np.sort(rows)], crop_settings, rng)[..., None]
        return x, targets[np.sort(rows)]

    return Batches(len(crops), batch_size, make, seed, shuffle=train)


def with_slice_head(model: keras.Model, task, settings: ClassifierConfig, columns: int):
    """The network with a per-slice head trained beside it (soft slice labels):
    what fits; what it saves is the network alone."""
    from competition.augment.layers import training_model
    from competition.training.slice_head import SliceHead

    head = SliceHead(model, columns, settings.slice_weight)
    wrapped = training_model(model, None, 0, image_layers=False, slice_head=head)
    wrapped.compile(keras.optimizers.Adam(settings.learning_rate), TaskLoss(head_specs(task)))
    return wrapped


def train_on_crops(
    task,
    crops,
    targets,
    settings: ClassifierConfig,
    crop_settings: CropConfig,
    out,
    seed: int,
    what: str,
    weights_dir: str = "weights",
    slice_targets: np.ndarray | None = None,
) -> dict:
    """Fit the crop classifier; `slice_targets` (N, 2k + 1, classes): soft
    slice labels for a per-slice head beside it (they ride in the labels)."""
    keras.utils.set_random_seed(seed)
    shape = (crops.shape[1], crop_settings.size, crop_settings.size, 1)
    soft = slice_targets is not None
    model = network(task, settings, shape, _training_mean(targets), weights_dir, not soft)
    labels = targets
    if soft:
        model = with_slice_head(model, task, settings, targets.shape[1])
        labels = np.concatenate([targets, slice_targets.reshape(len(targets), -1)], axis=1)
    data = _crop_batches(crops, labels, crop_settings, settings.batch_size, seed, train=True)
    record = {**fit_and_save(model, data, settings.epochs, out, what), "crops": len(crops)}
    if soft:  # the slices with a known soft label
        record["slice_targets"] = int(np.isfinite(slice_targets).any(axis=2).sum())
    return record


def predict_crops(model: keras.Model, crops, crop_settings: CropConfig) -> np.ndarray:
    x = window(crops, crop_settings, None)[..., None]
    return predict(model, x)


def train_on_stacks(
    task, stacks, targets, settings: ClassifierConfig, out, seed: int, what: str,
    weights_dir: str = "weights",
) -> dict:  # fmt: skip
    """The whole-series model on (N, T, S, S, 1) stacks."""
    keras.utils.set_random_seed(seed)
    model = network(task, settings, stacks.shape[1:], _training_mean(targets), weights_dir)

    def make(rows):
        rows = np.sort(rows)
        return stacks[rows], targets[rows]

    data = Batches(len(stacks), settings.batch_size, make, seed, shuffle=True)
    return {**fit_and_save(model, data, settings.epochs, out, what), "series": len(stacks)}
