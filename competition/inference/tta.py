"""Test-time augmentation views: the axes of a (batch, H, W, C) batch each
view flips. The one list of views the config, the ensemble model and the
tests share."""

from __future__ import annotations

TTA_AXES = {"identity": (), "hflip": (2,), "vflip": (1,), "hvflip": (1, 2)}
TTA_VIEWS = tuple(TTA_AXES)
