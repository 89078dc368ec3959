"""The sequence model: per series, sorted by z, a per-slice output from the
slice in its context.

    slice inputs (T, 3D + O) -> mask padding -> Dense (1x1 convolution over the
    features, the 1st place's first layer) -> 1-2 bidirectional GRU or LSTM
    layers, summed with their input (the 2nd place's residual sums) -> a
    Dense correction per output, added to the stage-1 logits -> the task's
    activations.

Adding the correction to the stage-1 logits (zero-initialised) makes the
untrained model the CNN itself, so training only has to learn what the
context changes. Every layer is a registered Keras layer (no Lambda):
checkpoints load in safe mode.
"""

from __future__ import annotations

import keras
from keras import ops

from competition.sequence.settings import SequenceConfig
from competition.task import TaskSpec
from competition.training.losses import compile_args
from competition.training.model import ACTIVATIONS
from competition.training.schedule import make_optimizer


@keras.saving.register_keras_serializable(package="competition")
class TakeLast(keras.layers.Layer):
    """The last `n` features of each step (the stage-1 logits of a slice input)."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)
        self.supports_masking = True

    def call(self, inputs):
        return inputs[..., -self.n :]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.n)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


@keras.saving.register_keras_serializable(package="competition")
class HeadActivation(keras.layers.Layer):
    """Logits side by side -> each head's activation on its slice
    (sigmoid, softmax, or none for an ordinal value)."""

    def __init__(self, heads: list, **kwargs):
        super().__init__(**kwargs)
        self.heads = [list(h) for h in heads]  # [activation, start, stop]
        self.supports_masking = True

    def call(self, logits):
        parts = []
        for activation, start, stop in self.heads:
            part = logits[..., start:stop]
            if activation == "sigmoid":
                part = ops.sigmoid(part)
            elif activation == "softmax":
                part = ops.softmax(part, axis=-1)
            parts.append(part)
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "heads": self.heads}


def head_activations(task: TaskSpec) -> list[list]:
    """[activation, start, stop] per head, or per softmax of a head of several."""
    found = []
    for head, part in task.head_slices():
        runs = head.softmaxes or [slice(0, part.stop - part.start)]
        activation = ACTIVATIONS[head.kind] or "linear"
        found += [[activation, part.start + run.start, part.start + run.stop] for run in runs]
    return found


def _recurrent(sequence_config: SequenceConfig, units: int, index: int) -> keras.layers.Layer:
    kind = keras.layers.GRU if sequence_config.rnn == "gru" else keras.layers.LSTM
    return keras.layers.Bidirectional(
        kind(units, return_sequences=True),
        merge_mode="concat",
        name=f"{sequence_config.rnn}{index}",
    )


def build_sequence_model(
    feature_dim: int, task: TaskSpec, sequence_config: SequenceConfig
) -> keras.Model:
    outputs = len(task.outputs)
    inputs = keras.Input(shape=(None, feature_dim), name="series")
    masked = keras.layers.Masking(0.0, name="padding")(inputs)
    stage1 = TakeLast(outputs, name="stage1_logits")(masked)
    x = keras.layers.Dense(2 * sequence_config.units, activation="relu", name="project")(masked)
    x = keras.layers.Dropout(sequence_config.dropout, name="dropout_in")(x)
    for index in range(sequence_config.layers):
        x = keras.layers.Add(name=f"residual{index}")(
            [x, _recurrent(sequence_config, sequence_config.units, index)(x)]
        )
    x = keras.layers.Dropout(sequence_config.dropout, name="dropout_out")(x)
    correction = keras.layers.Dense(outputs, kernel_initializer="zeros", name="correction")(x)
    logits = keras.layers.Add(name="logits")([stage1, correction])
    probabilities = HeadActivation(head_activations(task), name="outputs", dtype="float32")(logits)
    return keras.Model(inputs, probabilities, name=f"sequence_{task.name}")


def compiled_sequence_model(
    task: TaskSpec, sequence_config: SequenceConfig, feature_dim: int, steps_per_epoch: int
) -> keras.Model:
    """The sequence model with the task's loss; its metric weighted per slice
    (padded steps weigh 0)."""
    model = build_sequence_model(feature_dim, task, sequence_config)
    args = compile_args(task)
    model.compile(
        optimizer=make_optimizer(sequence_config, steps_per_epoch),
        loss=args["loss"],
        weighted_metrics=args["metrics"],
    )
    return model
