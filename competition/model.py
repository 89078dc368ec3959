"""Backbone factory and the competition head.

Every model takes the same input: windowed images in 0..255, float32
(B, H, W, C). The backbone's own input preprocessing is inside the model, as
serializable layers (no Lambda), so checkpoints load with safe_mode=True.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np

from competition.config import ModelConfig
from competition.errors import KitError
from competition.labels import SUBTYPES


class ModelError(KitError, ValueError):
    """A model that cannot be built as configured."""


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


def _tiny_cnn(inputs, weights):
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for filters in (16, 32, 64, 96):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    backbone = keras.Model(inputs, x, name="tiny_cnn")
    if weights is not None:
        backbone.load_weights(weights)
    return backbone


def _application(name: str):
    apps = keras.applications

    def build(inputs, weights):
        if name == "resnet50":
            x = ChannelNormalize([103.939, 116.779, 123.68], [1, 1, 1], reverse_channels=True)(
                inputs
            )
            base = apps.ResNet50(include_top=False, weights=weights, input_tensor=x)
            return keras.Model(inputs, base.output, name="resnet50")
        factory = {
            "efficientnet_b0": apps.EfficientNetB0,
            "efficientnetv2_b0": apps.EfficientNetV2B0,
            "convnext_tiny": apps.ConvNeXtTiny,
        }[name]
        return factory(include_top=False, weights=weights, input_tensor=inputs)

    return build


BACKBONES = {
    "tiny_cnn": _tiny_cnn,
    "efficientnet_b0": _application("efficientnet_b0"),
    "efficientnetv2_b0": _application("efficientnetv2_b0"),
    "resnet50": _application("resnet50"),
    "convnext_tiny": _application("convnext_tiny"),
}


def resolve_weights(cfg: ModelConfig) -> str | None:
    """None, 'imagenet', or an existing local file (checked here, not deep in Keras)."""
    if cfg.weights in (None, "imagenet"):
        return cfg.weights
    path = Path(cfg.weights).expanduser()
    if not path.is_file():
        raise ModelError(
            f"model.weights: no weights file at {path}. Expected null, imagenet, or the path "
            "of a local weights file (e.g. the backbone's *_notop.h5)."
        )
    return str(path)


def _build_backbone(cfg: ModelConfig, inputs):
    if cfg.backbone not in BACKBONES:
        raise ModelError(
            f"Unknown model.backbone {cfg.backbone!r}. Known: {', '.join(sorted(BACKBONES))}"
        )
    weights = resolve_weights(cfg)
    try:
        return BACKBONES[cfg.backbone](inputs, weights)
    except Exception as exc:
        if weights != "imagenet":
            raise
        raise ModelError(
            f"ImageNet weights for {cfg.backbone} could not be loaded ({type(exc).__name__}: "
            f"{exc}). Offline, download the backbone's no-top weights file from the Keras "
            "applications release on a machine with internet, copy it here and set "
            "model.weights to its path (or put it in ~/.keras/models/)."
        ) from None


def prevalence_bias(prevalence: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)): the head starts out predicting the training prevalence."""
    p = np.clip(np.asarray(prevalence, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p)).astype(np.float32)


def build_model(
    cfg: ModelConfig, input_shape: tuple[int, int, int], prevalence: np.ndarray | None = None
) -> keras.Model:
    """Backbone + global average pooling + dropout + Dense(6, sigmoid, float32)."""
    inputs = keras.Input(shape=input_shape, name="image")
    backbone = _build_backbone(cfg, inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    bias = prevalence_bias(prevalence if prevalence is not None else np.full(len(SUBTYPES), 0.5))
    outputs = keras.layers.Dense(
        len(SUBTYPES),
        activation="sigmoid",
        dtype="float32",
        name="subtypes",
        bias_initializer=keras.initializers.Constant(bias),
    )(x)
    return keras.Model(inputs, outputs, name=f"{cfg.backbone}_ich")


def check_input_shape(model: keras.Model, shape: tuple[int, int, int], source: str) -> None:
    """A checkpoint trained at another size or with other outputs is refused."""
    got, outputs = tuple(model.input_shape[1:]), model.output_shape[-1]
    if got != tuple(shape) or outputs != len(SUBTYPES):
        raise ModelError(
            f"{source}: the model takes {got} and gives {outputs} outputs; the config needs "
            f"{tuple(shape)} and {len(SUBTYPES)}"
        )


def load_checkpoint(path, safe_mode: bool = True) -> keras.Model:
    """A saved model for inference. In safe mode (the default) no code from
    the file runs: a file that carries some (a Lambda layer) is refused."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"No model file at {path}")
    try:
        return keras.models.load_model(path, safe_mode=safe_mode, compile=False)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        if "safe_mode" in str(exc):
            raise ModelError(
                f"{path} holds Python code (a Lambda layer), which would run when it is "
                "loaded, so it was refused. If you trust the file (you made it, or know who "
                "did), load it with --set model.safe_mode=false."
            ) from None
        raise ModelError(f"{path} is not a readable Keras model file ({exc})") from None
