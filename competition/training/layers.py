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
