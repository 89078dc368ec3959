"""Pixels -> model input: a DICOM file's stored values -> windowed,
resized uint8 (H, W, C), the same whether it is computed while training or
once, into the cache (`competition.data.cache`).

Windowing runs through a lookup table: for 16-bit samples, HU and then the
windows depend on the stored value alone, so every possible value is mapped
once per rescale (a few distinct ones per competition) and an image becomes
one `np.take`. The table packs up to four channels into one uint32, so the
take and the resize each make one pass.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

from competition.data.dicom import Rescale, read_pixels
from competition.data.windows import window_stack

_PACKED = {1: np.uint8, 2: np.uint16, 3: np.uint32, 4: np.uint32}


def resize(stack: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) uint8 -> (size, size, C): INTER_AREA down, linear up.
    Large reductions go by exact halvings first (2x2 means, OpenCV's fast
    path: 512 -> 128 is 4x faster that way than in one step)."""
    channels = stack.shape[2]
    if channels > 4:  # OpenCV resizes at most 4 channels at a time
        parts = [
            resize(np.ascontiguousarray(stack[..., i : i + 4]), size) for i in range(0, channels, 4)
        ]
        return np.concatenate(parts, axis=2)
    while stack.shape[0] >= 2 * size and stack.shape[1] >= 2 * size and stack.shape[0] > size:
        if stack.shape[0] % 2 or stack.shape[1] % 2:
            break
        half = (stack.shape[1] // 2, stack.shape[0] // 2)
        stack = cv2.resize(stack, half, interpolation=cv2.INTER_AREA).reshape(*half[::-1], channels)
    if stack.shape[:2] == (size, size):
        return stack
    shrinking = stack.shape[0] > size or stack.shape[1] > size
    out = cv2.resize(
        stack, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    return out.reshape(size, size, channels)


def preprocess(hu: np.ndarray, windows: Sequence[Sequence[float]], size: int) -> np.ndarray:
    """HU (of every size) -> (size, size, channels) uint8: windows, then resize."""
    return resize(window_stack(hu, windows), size)


@functools.lru_cache(maxsize=64)
def _window_table(rescale: Rescale, dtype: str, windows: tuple) -> np.ndarray:
    """Every 16-bit stored value -> its windowed channels, packed (65536,)."""
    codes = np.arange(65536, dtype=np.uint16).view(np.dtype(dtype))
    table = window_stack(rescale.to_hu(codes), windows)  # (65536, C)
    channels = table.shape[1]
    padded = np.zeros((65536, np.dtype(_PACKED[channels]).itemsize), dtype=np.uint8)
    padded[:, :channels] = table
    return padded.view(_PACKED[channels]).reshape(-1)


def window_resize(
    pixels: np.ndarray, rescale: Rescale, windows: Sequence[Sequence[float]], size: int
) -> np.ndarray:
    """Stored samples -> (size, size, C) uint8, equal to
    preprocess(rescale.to_hu(pixels), windows, size)."""
    channels = len(windows)
    if pixels.dtype.itemsize != 2 or not rescale.per_value or channels > 4:
        return preprocess(rescale.to_hu(pixels), windows, size)
    key = tuple(tuple(float(v) for v in w) for w in windows)
    table = _window_table(rescale, pixels.dtype.str, key)
    packed = np.take(table, pixels.view(np.uint16))
    stack = packed.view(np.uint8).reshape(*pixels.shape, table.itemsize)
    out = resize(stack, size)
    if channels == 3:  # drop the padding channel with one SIMD pass
        return cv2.cvtColor(out, cv2.COLOR_BGRA2BGR)
    return out if out.shape[2] == channels else np.ascontiguousarray(out[..., :channels])


def load_windowed(path, windows: Sequence[Sequence[float]], size: int) -> np.ndarray:
    """A DICOM file -> (size, size, C) uint8 model input (DicomReadError if bad)."""
    pixels, rescale = read_pixels(path)
    return window_resize(pixels, rescale, windows, size)


def input_shape(config) -> tuple[int, int, int]:
    """(H, W, C) of the model input the config's preprocessing makes."""
    size = config.preprocess.image_size
    return size, size, len(config.preprocess.windows)

