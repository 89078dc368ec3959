"""The kit's own Keras layers, registered under the package name
`competition` so that checkpoints load in safe mode (no Lambda) whatever
module defines them."""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="competition")
class ChannelNormalize(keras.layers.Layer):
    """(x / scale - mean) / std per channel, optionally reversing channel order
    (caffe-style backbones such as ResNet50 expect BGR)."""

    def __init__(self, mean, std, scale=1.0, reverse_channels=False, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = list(mean), list(std)
        self.scale, self.reverse_channels = float(scale), bool(reverse_channels)

    def call(self, x):
        if self.reverse_channels:
            x = keras.ops.flip(x, axis=-1)
        mean = keras.ops.convert_to_tensor(np.asarray(self.mean, dtype="float32"))
        std = keras.ops.convert_to_tensor(np.asarray(self.std, dtype="float32"))
        return (keras.ops.cast(x, self.compute_dtype) / self.scale - mean) / std

    def get_config(self):
        return {
            **super().get_config(),
            "mean": self.mean,
            "std": self.std,
            "scale": self.scale,
            "reverse_channels": self.reverse_channels,
        }


@keras.saving.register_keras_serializable(package="competition")
class GeMPooling2D(keras.layers.Layer):
    """Generalised-mean pooling: (mean of x^p)^(1/p) over the feature map,
    p learned (starting at 3): between average (p=1) and max (p -> inf)
    pooling, so a small bright finding is not averaged away."""

    def __init__(self, p=3.0, eps=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.p_init, self.eps = float(p), float(eps)

    def build(self, input_shape):
        self.p = self.add_weight(
            name="p", shape=(), initializer=keras.initializers.Constant(self.p_init)
        )

    def call(self, x):
        x = keras.ops.maximum(keras.ops.cast(x, "float32"), self.eps)
        pooled = keras.ops.mean(keras.ops.power(x, self.p), axis=(1, 2))
        return keras.ops.power(pooled, 1.0 / self.p)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "p": self.p_init, "eps": self.eps}


@keras.saving.register_keras_serializable(package="competition")
class ToRGB(keras.layers.Layer):
    """C channels -> the 3 a pretrained backbone's first layer expects:
    `repeat` (channels cycled: grey -> grey, grey, grey; 1 or 2 channels) or
    `project` (a learned 1x1 mix, started at the channels' mean: at first
    each output channel is the grey mean of the inputs)."""

    def __init__(self, mode: str = "repeat", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.mode == "project":
            self.kernel = self.add_weight(
                shape=(channels, 3),
                initializer=keras.initializers.Constant(1.0 / channels),
                name="kernel",
            )

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        if self.mode == "project":
            return keras.ops.matmul(x, keras.ops.cast(self.kernel, self.compute_dtype))
        channels = x.shape[-1]
        return keras.ops.take(x, [i % channels for i in range(3)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="competition")
class SoftmaxEach(keras.layers.Layer):
    """A softmax over each run of `width` outputs (a head of several
    columns, each with its own classes: a grade per level)."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)

    def call(self, logits):
        count = logits.shape[-1] // self.width
        grouped = keras.ops.reshape(logits, (-1, count, self.width))
        return keras.ops.reshape(keras.ops.softmax(grouped, axis=-1), (-1, count * self.width))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable(package="competition")
class AttentionPooling(keras.layers.Layer):
    """(B, T, F) -> (B, F): the steps averaged with learned weights (a
    tanh scoring layer of `units`, softmax over the steps)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.hidden = keras.layers.Dense(self.units, activation="tanh", name="hidden")
        self.score = keras.layers.Dense(1, name="score")

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.score.build((*input_shape[:-1], self.units))

    def call(self, x):
        weights = keras.ops.softmax(self.score(self.hidden(x)), axis=1)
        return keras.ops.sum(weights * x, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="competition")
class SlicePosition(keras.layers.Layer):
    """(B, T, F) + a learned vector per step: where a slice lies along the
    body axis (the unit's T slices are evenly spaced over it), for poolings
    that would otherwise not know the order (attention)."""

    def build(self, input_shape):
        self.position = self.add_weight(
            shape=tuple(input_shape[1:]), initializer="zeros", name="position"
        )

    def call(self, x):
        return x + keras.ops.cast(self.position, x.dtype)[None]


@keras.saving.register_keras_serializable(package="competition")
class PositionFeatures(keras.layers.Layer):
    """(B, L, 1) relative positions along the body axis (0 = first slice,
    1 = last, -1 = padding) -> (B, L, 2 * frequencies) sines and cosines:
    where a slice lies, whatever the number of slices."""

    def __init__(self, frequencies: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.frequencies = int(frequencies)

    def call(self, positions):
        scales = keras.ops.arange(1, self.frequencies + 1, dtype="float32") * np.pi
        angles = keras.ops.cast(positions, "float32") * scales
        return keras.ops.concatenate([keras.ops.sin(angles), keras.ops.cos(angles)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2 * self.frequencies)

    def get_config(self):
        return {**super().get_config(), "frequencies": self.frequencies}


@keras.saving.register_keras_serializable(package="competition")
class MaskedPooling(keras.layers.Layer):
    """[(B, L, F) steps, (B, L, 1) positions] -> (B, 2F): attention pooling
    and the maximum over the real steps only (a position of -1 is padding)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.attention = AttentionPooling(self.units, name="attention")

    def build(self, input_shape):
        self.attention.build(input_shape[0])

    def call(self, inputs):
        x, positions = inputs
        real = keras.ops.cast(positions >= 0, x.dtype)  # (B, L, 1)
        scores = self.attention.score(self.attention.hidden(x))
        scores = scores + (real - 1.0) * 1e9  # padding gets no weight
        weights = keras.ops.softmax(scores, axis=1)
        mean = keras.ops.sum(weights * x, axis=1)
        top = keras.ops.max(x + (real - 1.0) * 1e9, axis=1)
        return keras.ops.concatenate([mean, top], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 2 * input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="competition")
class BackboneGate(keras.layers.Layer):
    """The identity forward; backward, the gradient times `open` (0 or 1, a
    non-trainable variable, so it is saved and resumed with the weights).
    Closed, the backbone gets no gradient while the heads warm up
    (train.freeze_epochs); the model never needs recompiling to open it, on
    every backend."""

    def build(self, input_shape):
        self.open = self.add_weight(
            name="open", shape=(), initializer="ones", trainable=False, dtype="float32"
        )

    def call(self, x):
        gate = keras.ops.cast(self.open, x.dtype)
        return gate * x + (1 - gate) * keras.ops.stop_gradient(x)


@keras.saving.register_keras_serializable(package="competition")
class MetadataBranch(keras.layers.Layer):
    """The metadata vector (competition.data.metadata: values, missing flags,
    category codes) -> a dense feature: numeric columns normalised with the
    fold's training mean and std (0 where missing, the flags beside them),
    each categorical column embedded, then a ReLU layer. The vocabularies
    ride along in the config: the host codes test rows with the model's own."""

    def __init__(self, mean, std, vocabularies, units=32, embedding=4, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.vocabularies = {k: list(v) for k, v in vocabularies.items()}
        self.units, self.embedding = int(units), int(embedding)
        self.embeddings = [
            keras.layers.Embedding(len(values) + 1, self.embedding, name=f"embed_{k}")
            for k, values in enumerate(self.vocabularies.values())
        ]
        self.dense = keras.layers.Dense(self.units, activation="relu", name="metadata_dense")

    def build(self, input_shape):
        for layer in self.embeddings:
            layer.build((None,))
        width = 2 * len(self.mean) + self.embedding * len(self.embeddings)
        self.dense.build((None, width))

    def call(self, x):
        n = len(self.mean)
        x = keras.ops.cast(x, "float32")
        values, absent = x[:, :n], x[:, n : 2 * n]
        mean = keras.ops.convert_to_tensor(np.asarray(self.mean, dtype="float32"))
        std = keras.ops.convert_to_tensor(np.asarray(self.std, dtype="float32"))
        parts = [(values - mean) / std * (1.0 - absent), absent]
        for k, layer in enumerate(self.embeddings):
            parts.append(layer(keras.ops.cast(x[:, 2 * n + k], "int32")))
        return self.dense(keras.ops.concatenate(parts, axis=-1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std,
                "vocabularies": self.vocabularies, "units": self.units,
                "embedding": self.embedding}  # fmt: skip
