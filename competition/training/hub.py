"""A KerasHub backbone from a preset saved in a local folder
(`model.backbone: hub:<folder>`): what `Backbone.save_to_preset` writes,
and what a Kaggle model download holds (config.json, model.weights.h5,
metadata.json and, for image models, image_converter.json).

The preset's image converter (its scale and offset) becomes a
ChannelNormalize layer inside the model, read from image_converter.json
rather than through KerasHub's converter class, which needs tensorflow-text
(not in the kit's pins, and not needed to rescale). A preset without one gets
0..1 input. Pinned: keras-hub 0.26, Kaggle's version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from competition.errors import KitError

CONVERTER = "image_converter.json"


def preset_folder(folder: str) -> Path:
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise KitError(
            f"model.backbone=hub:{folder}: no KerasHub preset there (expected {path}/config.json "
            "and model.weights.h5, as Backbone.save_to_preset writes them). Fetch one on a "
            "machine with internet: make weights BACKBONE=hub:<kaggle handle> WEIGHTS_DIR=<dir>, "
            "then attach that folder."
        )
    return path


def _per_channel(value, default: float) -> np.ndarray:
    value = default if value is None else value
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (3,))


def converter_affine(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) per channel of the preset's converter: input*scale + offset."""
    file = path / CONVERTER
    if not file.is_file():
        return _per_channel(1 / 255.0, 1.0), _per_channel(0.0, 0.0)
    try:
        config = json.loads(file.read_text())["config"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KitError(f"{file}: not a KerasHub image converter config ({exc})") from None
    return _per_channel(config.get("scale"), 1.0), _per_channel(config.get("offset"), 0.0)


def _load(path: Path, load_weights: bool):
    import keras_hub

    try:
        return keras_hub.models.Backbone.from_preset(str(path), load_weights=load_weights)
    except Exception as exc:  # KerasHub raises ValueError, OSError, KeyError...
        raise KitError(
            f"{path}: the KerasHub preset could not be loaded ({type(exc).__name__}: {exc}). "
            f"Check config.json and model.weights.h5 (keras-hub 0.26 reads it)."
        ) from None


def _verify_if_listed(path: Path) -> None:
    """A preset that make weights fetched is checked against its checksum."""
    from competition.training.weights_store import read_checksums, verify

    if path.name in read_checksums(path.parent):
        verify(path.parent, path.name, f"hub:<the handle of {path.name}>")


def hub_backbone(folder: str, inputs, weights):
    """The preset's backbone on the 0..255 input, its converter inside;
    weights None: the preset's architecture with random weights."""
    import keras

    from competition.training.layers import ChannelNormalize

    path = preset_folder(folder)
    if weights is not None:
        _verify_if_listed(path)
    scale, offset = converter_affine(path)
    # x * scale + offset == (x - mean) / std with std = 1/scale, mean = -offset/scale
    x = ChannelNormalize(list(-offset / scale), list(1 / scale), name="hub_input")(inputs)
    backbone = _load(path, load_weights=weights is not None)
    features = backbone(x)
    if isinstance(features, dict):
        raise KitError(
            f"hub:{folder}: the backbone ({type(backbone).__name__}) returns several outputs "
            f"({sorted(features)}); the kit takes image backbones that return one feature map "
            "or one token sequence."
        )
    return keras.Model(inputs, features, name=f"hub_{path.name}")
