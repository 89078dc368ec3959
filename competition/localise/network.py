"""The keypoint model: a U-Net-style decoder on a Keras backbone.

    (B, L, L, 3) -> backbone (one of the kit's: tiny_cnn, keras.applications)
      -> its feature maps at strides 32 .. 2 (the last layer at each size)
      -> up x2, concatenated with the next map, two 3 x 3 conv + BN + ReLU, ...
      -> 1 x 1 conv, a sigmoid per target -> (B, L/2, L/2, K) heatmaps

The loss is a binary cross-entropy per pixel against the Gaussian targets,
the peaks weighted up (they are a few pixels of thousands), and a target
with no labelled point in the sample left out (its mask 0): y_true holds
the K target maps, then the K masks.
"""

from __future__ import annotations

import keras
from keras import ops

from competition.training.model import build_backbone
from competition.training.settings import ModelConfig

STRIDE = 2  # the heatmap is half the input's size
PEAK_WEIGHT = 20.0


def _maps_by_size(model: keras.Model) -> dict[int, object]:
    """Spatial size -> the last 4-D output at that size, nested models included."""
    found: dict[int, object] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential):
            found.update(_maps_by_size(layer))
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError):  # a layer used more than once
            continue
        if isinstance(out, list | tuple) or len(out.shape) != 4 or out.shape[1] is None:
            continue
        found[int(out.shape[1])] = out
    return found


def _halvings(size: int, s: int) -> int | None:
    """k where s = size / 2^k (a padded stem's odd sizes are no U-Net level)."""
    k = 0
    while s * 2**k < size:
        k += 1
    return k if s * 2**k == size else None


def _block(x, units: int, name: str):
    for k in range(2):
        x = keras.layers.Conv2D(units, 3, padding="same", use_bias=False, name=f"{name}_conv{k}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{k}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{k}")(x)
    return x


def build_localiser(model_config: ModelConfig, size: int, targets: int, units: int) -> keras.Model:
    inputs = keras.Input(shape=(size, size, 3), name="slices")
    backbone = build_backbone(model_config, inputs)
    maps = {s: m for s, m in _maps_by_size(backbone).items() if _halvings(size, s) is not None}
    deepest = min(maps)
    x = maps[deepest]
    for k, s in enumerate(s for s in sorted(maps) if s > deepest and s <= size // STRIDE):
        x = keras.layers.UpSampling2D(s // int(x.shape[1]), name=f"up{k}")(x)
        x = keras.layers.Concatenate(name=f"skip{k}")([x, maps[s]])
        x = _block(x, units, f"decoder{k}")
    if int(x.shape[1]) != size // STRIDE:  # a backbone without a map at L/2
        x = keras.layers.Resizing(size // STRIDE, size // STRIDE, name="to_heatmap_size")(x)
        x = _block(x, units, "decoder_last")
    outputs = keras.layers.Conv2D(
        targets,
        1,
        activation="sigmoid",
        dtype="float32",
        name="heatmaps",
        bias_initializer=keras.initializers.Constant(-4.0),  # start near 0: most pixels are
    )(x)
    return keras.Model(inputs, outputs, name="localiser")


@keras.saving.register_keras_serializable(package="competition")
class HeatmapLoss(keras.losses.Loss):
    """Masked, peak-weighted binary cross-entropy (see the module)."""

    def __init__(self, targets: int, name="heatmap_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.targets = int(targets)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        truth, mask = y_true[..., : self.targets], y_true[..., self.targets :]
        p = ops.clip(ops.cast(y_pred, "float32"), 1e-6, 1 - 1e-6)
        bce = -(truth * ops.log(p) + (1 - truth) * ops.log(1 - p))
        weight = mask * (1 + PEAK_WEIGHT * truth)
        return ops.sum(bce * weight, axis=(1, 2, 3)) / ops.maximum(
            ops.sum(mask, axis=(1, 2, 3)), 1.0
        )

    def get_config(self):
        return {**super().get_config(), "targets": self.targets}
