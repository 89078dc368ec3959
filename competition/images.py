"""Where model inputs come from: an image ID -> a windowed, resized uint8
(H, W, C) array. From DICOM now; a preprocessed cache plugs in beside it."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from competition.dicom import load_hu, window_stack
from competition.layout import Layout


def preprocess(hu: np.ndarray, windows: Sequence[Sequence[float]], size: int) -> np.ndarray:
    """HU (any size) -> (size, size, channels) uint8: windows, then resize."""
    stack = window_stack(hu, windows)
    if stack.shape[:2] != (size, size):
        shrinking = stack.shape[0] > size or stack.shape[1] > size
        stack = cv2.resize(
            stack, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
    return stack.reshape(size, size, len(windows))


class DicomSource:
    """Reads each image from its DICOM file (raises DicomReadError on a bad one)."""

    def __init__(self, layout: Layout, split: str, windows: Sequence[Sequence[float]], size: int):
        self.layout, self.split = layout, split
        self.windows, self.size = [list(w) for w in windows], size

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.size, self.size, len(self.windows)

    def load(self, image_id: str) -> np.ndarray:
        return preprocess(
            load_hu(self.layout.image_path(self.split, image_id)), self.windows, self.size
        )
