"""Test-time augmentation views: the axes of a (batch, [slices,] H, W, C)
batch each view flips, counted from the end (a unit's stack flips as one).
The one list of views the config, the ensemble model, the sequence stage's
features and the tests share."""

from __future__ import annotations

TTA_AXES = {"identity": (), "hflip": (-2,), "vflip": (-3,), "hvflip": (-3, -2)}
TTA_VIEWS = tuple(TTA_AXES)


def tta_view(inputs, name: str):
    """A batch tensor as the view `name` sees it (Keras ops, inside a model)."""
    import keras  # here: the config reads the names without loading a backend

    for axis in TTA_AXES[name]:
        inputs = keras.ops.flip(inputs, axis=axis)
    return inputs
