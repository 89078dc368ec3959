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
    """The kind's heads as one softmax each: a crop shows one point."""
    chosen = [dataclasses.replace(h, columns=[h.name]) for h in task.heads if h.name in heads]
    return dataclasses.replace(task, heads=chosen)


def kind_task(task: TaskSpec, heads: list[str]) -> TaskSpec:
    """The kind's heads as the task has them (the whole-series model)."""
    return dataclasses.replace(task, heads=[h for h in task.heads if h.name in heads])


def network(task: TaskSpec, settings: ClassifierConfig, shape, training_mean,
            weights_dir: str = "weights") -> keras.Model:  # fmt: skip
    """The series model over (T, S, S, 1) stacks; a pretrained backbone
    (weights from `weights_dir`) gets each grey slice copied to its 3
    channels (model.input_adapter repeat)."""
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
    model.compile(keras.optimizers.Adam(settings.learning_rate), TaskLoss(head_specs(task)))
    return model


def _crop_batches(crops, targets, crop_settings: CropConfig, batch_size, seed, train: bool):
    """(x, y) batches of crop windows (B, 2k + 1, size, size, 1); jittered when training."""

    def make(rows):
        rng = np.random.default_rng([seed, int(rows[0]), len(rows)]) if train else None
        x = window(crops[np.sort(rows)], crop_settings, rng)[..., None]
        return x, targets[np.sort(rows)]

    return Batches(len(crops), batch_size, make, seed, shuffle=train)


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
) -> dict:
    keras.utils.set_random_seed(seed)
    shape = (crops.shape[1], crop_settings.size, crop_settings.size, 1)
    mean = np.nan_to_num(np.nanmean(targets, axis=0))
    model = network(task, settings, shape, mean, weights_dir)
    data = _crop_batches(crops, targets, crop_settings, settings.batch_size, seed, train=True)
    return {**fit_and_save(model, data, settings.epochs, out, what), "crops": len(crops)}


def predict_crops(model: keras.Model, crops, crop_settings: CropConfig) -> np.ndarray:
    x = window(crops, crop_settings, None)[..., None]
    return predict(model, x)


def train_on_stacks(
    task, stacks, targets, settings: ClassifierConfig, out, seed: int, what: str,
    weights_dir: str = "weights",
) -> dict:  # fmt: skip
    """The whole-series model on (N, T, S, S, 1) stacks."""
    keras.utils.set_random_seed(seed)
    mean = np.nan_to_num(np.nanmean(targets, axis=0))
    model = network(task, settings, stacks.shape[1:], mean, weights_dir)

    def make(rows):
        rows = np.sort(rows)
        return stacks[rows], targets[rows]

    data = Batches(len(stacks), settings.batch_size, make, seed, shuffle=True)
    return {**fit_and_save(model, data, settings.epochs, out, what), "series": len(stacks)}
