"""The series model of a series- or study-level task, trained end to end
with `fit`: a unit's T slices (each a 2.5D stack as a CNN would take it)
through one backbone with shared weights (TimeDistributed), dropout, then
a bidirectional GRU or LSTM whose steps are pooled (mean and max), or
attention pooling over the slices, then the task's heads.

    (B, T, H, W, C) -> backbone per slice -> (B, T, F) -> layer norm -> BiGRU/BiLSTM ->
    mean + max over T, or attention over T -> heads -> (B, outputs)

The recurrent layer sees the slices in body-axis order, and attention
pooling a learned vector per slice position, so a finding's position along
the axis (which vertebra, which artery) can be told apart.
"""

from __future__ import annotations

import keras
import numpy as np

from competition.task import TaskSpec
from competition.training import layers
from competition.training.backbones import label
from competition.training.model import GATE, build_model, slice_features, task_heads
from competition.training.settings import ModelConfig, SeriesConfig


def slice_encoder(model_config: ModelConfig, image_shape: tuple[int, int, int]) -> keras.Model:
    """One slice -> its pooled backbone features (shared by every slice)."""
    inputs = keras.Input(shape=image_shape, name="slice")
    return keras.Model(inputs, slice_features(model_config, inputs), name="slice_encoder")


def pooled_over_slices(series: SeriesConfig, x):
    """(B, T, F) -> (B, F') as series.pooling says."""
    if series.pooling == "attention":
        x = layers.SlicePosition(name="slice_position")(x)
        return layers.AttentionPooling(series.units, name="attention")(x)
    recurrent = keras.layers.GRU if series.pooling == "gru" else keras.layers.LSTM
    x = keras.layers.Bidirectional(recurrent(series.units, return_sequences=True), name="context")(
        x
    )
    mean = keras.layers.GlobalAveragePooling1D(name="mean_over_slices")(x)
    top = keras.layers.GlobalMaxPooling1D(name="max_over_slices")(x)
    return keras.layers.Concatenate(name="pooled")([mean, top])


def build_series_model(
    model_config: ModelConfig,
    series: SeriesConfig,
    input_shape: tuple[int, int, int, int],
    task: TaskSpec,
    training_mean: np.ndarray | None = None,
    gate: bool = False,
) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="series")
    encoder = slice_encoder(model_config, tuple(input_shape[1:]))
    x = keras.layers.TimeDistributed(encoder, name="slices")(inputs)
    if gate:  # train.freeze_epochs: the slice encoder gets no gradient while closed
        x = layers.BackboneGate(name=GATE)(x)
    # Pooled ReLU features are unbounded: normalised, they do not saturate the
    # recurrent gates (unnormalised, a BiGRU did not even fit 64 studies).
    x = keras.layers.LayerNormalization(name="slice_norm")(x)
    x = keras.layers.Dropout(series.dropout, name="dropout")(x)
    outputs = task_heads(task, pooled_over_slices(series, x), training_mean)
    return keras.Model(
        inputs, outputs, name=f"{label(model_config.backbone)}_{series.pooling}_{task.name}"
    )


def build_network(
    model_config: ModelConfig,
    input_shape: tuple[int, ...],
    task: TaskSpec,
    training_mean: np.ndarray | None = None,
    series: SeriesConfig | None = None,
    gate: bool = False,
    metadata: dict | None = None,
) -> keras.Model:
    """The task's network for its input: the CNN for an image (or its 2.5D
    stack), the series model for a stack of T slices (T, H, W, C); `gate`:
    a BackboneGate behind the backbone (train.freeze_epochs); `metadata`: the
    image model's metadata branch (see build_model)."""
    if len(input_shape) == 4:
        return build_series_model(
            model_config, series or SeriesConfig(), input_shape, task, training_mean, gate
        )
    return build_model(model_config, input_shape, task, training_mean, gate, metadata)
