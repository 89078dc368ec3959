"""Pixels -> model input: an image file -> uint8 (rows, cols, channels), the
same whether it is computed while training or once, into the cache
(`competition.data.cache`). `PixelSpec` holds the settings (from the
`preprocess` section and the task's image type); `load_input` applies them:

1. channels by `preprocess.mode`:
   - ct_windows (DICOM): stored values -> HU -> one channel per window, through
     a lookup table per rescale (every 16-bit stored value -> its packed
     channels), so an image is one `np.take`; a slice with intensity levels
     (an MR slice of a series- or study-level task, which has no HU: its
     series' range, competition.data.volumes) maps that range to 0..255, the
     same gray in every window's channel;
   - voi_lut (DICOM): the header's modality and VOI LUTs (window LINEAR or
     SIGMOID, or an explicit LUT), MONOCHROME1 inverted: one gray channel;
   - color: RGB (colour DICOM, PNG, JPEG; a gray file is repeated);
   - gray: one channel (a DICOM's display values, a PNG's or JPEG's luminance);
2. `preprocess.crop: foreground`: cut to the box of the largest bright region
   (the breast in a mammogram, the disk of a fundus photo);
3. resize to `preprocess.image_size` (rows = cols, or [rows, cols]): INTER_AREA
   down (by exact halvings first: 512 -> 128 is 4x faster that way), linear up;
   `preprocess.keep_aspect`: fit inside and pad with black;
4. `preprocess.channels`: a gray channel repeated, colour averaged to gray.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from competition.data import raster
from competition.data.dicom import Rescale, load_display, load_rgb, read_pixels
from competition.data.pixelspec import PixelSpec
from competition.data.windows import window_stack

__all__ = ["fit", "load_input", "load_windowed", "resize"]

_PACKED = {1: np.uint8, 2: np.uint16, 3: np.uint32, 4: np.uint32}


# --- resizing -----------------------------------------------------------------------


def resize(stack: np.ndarray, shape) -> np.ndarray:
    """(H, W, C) uint8 -> (rows, cols, C): INTER_AREA down, linear up. Large
    reductions go by exact halvings first (2x2 means, OpenCV's fast path)."""
    rows, cols = (shape, shape) if isinstance(shape, int) else shape
    channels = stack.shape[2]
    if channels > 4:  # OpenCV resizes at most 4 channels at a time
        parts = [
            resize(np.ascontiguousarray(stack[..., i : i + 4]), (rows, cols))
            for i in range(0, channels, 4)
        ]
        return np.concatenate(parts, axis=2)
    while stack.shape[0] >= 2 * rows and stack.shape[1] >= 2 * cols and stack.shape[0] > rows:
        if stack.shape[0] % 2 or stack.shape[1] % 2:
            break
        half = (stack.shape[1] // 2, stack.shape[0] // 2)
        stack = cv2.resize(stack, half, interpolation=cv2.INTER_AREA).reshape(*half[::-1], channels)
    if stack.shape[:2] == (rows, cols):
        return stack
    shrinking = stack.shape[0] > rows or stack.shape[1] > cols
    out = cv2.resize(
        stack, (cols, rows), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    return out.reshape(rows, cols, channels)


def foreground_box(image: np.ndarray, fraction: float = 0.1) -> tuple[slice, slice]:
    """The box of the largest region brighter than `fraction` of the
    maximum (at least 10), found on a copy of at most ~256 px a side."""
    gray = image.max(axis=2) if image.ndim == 3 else image
    step = max(1, max(gray.shape) // 256)
    small = np.ascontiguousarray(gray[::step, ::step])
    mask = (small > max(10, int(small.max()) * fraction)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return slice(None), slice(None)
    x, y, w, h = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4]
    return slice(y * step, (y + h) * step), slice(x * step, (x + w) * step)


def letterbox(stack: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resized to fit inside `shape` with its aspect ratio, centred on black."""
    rows, cols = shape
    scale = min(rows / stack.shape[0], cols / stack.shape[1])
    inner = (max(1, round(stack.shape[0] * scale)), max(1, round(stack.shape[1] * scale)))
    fitted = resize(stack, inner)
    out = np.zeros((rows, cols, stack.shape[2]), dtype=np.uint8)
    top, left = (rows - inner[0]) // 2, (cols - inner[1]) // 2
    out[top : top + inner[0], left : left + inner[1]] = fitted
    return out


def fit(stack: np.ndarray, spec: PixelSpec) -> np.ndarray:
    """Crop (when asked), then resize or letterbox to the spec's shape."""
    if spec.crop == "foreground":
        rows, cols = foreground_box(stack)
        stack = np.ascontiguousarray(stack[rows, cols])
    if spec.keep_aspect:
        return letterbox(stack, spec.shape)
    return resize(stack, spec.shape)


def adapt_channels(image: np.ndarray, wanted: int | None) -> np.ndarray:
    """A gray channel repeated, or colour averaged to gray, to `wanted` channels."""
    if wanted is None or image.shape[2] == wanted:
        return image
    if image.shape[2] == 1:
        return np.repeat(image, wanted, axis=2)
    gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)[..., None]
    return gray if wanted == 1 else np.repeat(gray, wanted, axis=2)


# --- CT windows through a lookup table ------------------------------------------------


def preprocess(hu: np.ndarray, windows: Sequence[Sequence[float]], size) -> np.ndarray:
    """HU (of every size) -> (rows, cols, channels) uint8: windows, then resize."""
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
    pixels: np.ndarray, rescale: Rescale, windows: Sequence[Sequence[float]], size
) -> np.ndarray:
    """Stored samples -> (rows, cols, C) uint8, equal to
    preprocess(rescale.to_hu(pixels), windows, size)."""
    spec = PixelSpec("dicom", "ct_windows", tuple(map(tuple, windows)), _shape(size))
    return _ct_input(pixels, rescale, spec)


def _shape(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _ct_input(pixels: np.ndarray, rescale: Rescale, spec: PixelSpec) -> np.ndarray:
    channels = len(spec.windows)
    if pixels.dtype.itemsize != 2 or not rescale.per_value or channels > 4:
        return fit(window_stack(rescale.to_hu(pixels), spec.windows), spec)
    key = tuple(tuple(float(v) for v in w) for w in spec.windows)
    table = _window_table(rescale, pixels.dtype.str, key)
    packed = np.take(table, pixels.view(np.uint16))
    stack = packed.view(np.uint8).reshape(*pixels.shape, table.itemsize)
    out = fit(stack, spec)  # the padding channel rides along: one pass, not one per channel
    if channels == 3:  # drop the padding channel with one SIMD pass
        return cv2.cvtColor(out, cv2.COLOR_BGRA2BGR)
    return out if out.shape[2] == channels else np.ascontiguousarray(out[..., :channels])


def load_windowed(path, windows: Sequence[Sequence[float]], size) -> np.ndarray:
    """A CT DICOM file -> (rows, cols, C) uint8 model input (DicomReadError if bad)."""
    pixels, rescale = read_pixels(path)
    return window_resize(pixels, rescale, windows, size)


# --- every mode --------------------------------------------------------------------------


def _channels(path: Path, spec: PixelSpec, frame: int | None = None) -> np.ndarray:
    """The file's display channels at full size, uint8 (H, W, C)."""
    if spec.image_format == "dicom":
        if spec.mode == "voi_lut" or spec.mode == "gray":
            return load_display(path, frame)[..., None]
        return load_rgb(path, frame)
    # JPEGs are decoded at a reduced scale when that still covers the target
    at_least = None if spec.crop == "foreground" else spec.shape
    return raster.read(path, colour=spec.mode == "color", at_least=at_least)


def _levelled_input(
    pixels: np.ndarray, rescale: Rescale, levels: tuple[float, float], spec: PixelSpec
) -> np.ndarray:
    """Values without HU (MR): [low, high] of the series -> 0..255, one gray
    channel repeated in each window's place (the model's input shape)."""
    low, high = levels
    scaled = (rescale.to_hu(pixels) - np.float32(low)) * np.float32(255.0 / (high - low))
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)[..., None]
    return np.repeat(fit(gray, spec), len(spec.windows), axis=2)


def load_input(
    path, spec: PixelSpec, frame: int | None = None, levels: tuple[float, float] | None = None
) -> np.ndarray:
    """An image file (`frame`: one frame of a multi-frame DICOM; `levels`:
    the intensity range of a slice without HU) -> uint8 (rows, cols,
    channels) model input (ImageReadError, naming the file and the cause,
    when it cannot be read)."""
    if spec.mode == "ct_windows":
        pixels, rescale = read_pixels(path, frame)
        if levels is None:
            image = _ct_input(pixels, rescale, spec)
        else:
            image = _levelled_input(pixels, rescale, levels, spec)
    else:
        image = _channels(Path(path), spec, frame)
        if spec.mode == "color" and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)  # a gray file in a colour task
        image = fit(image, spec)
    return adapt_channels(image, spec.channels)


def load_entry(root: Path, entry, spec: PixelSpec) -> np.ndarray:
    """load_input of an index entry (competition.data.index.Entry: a path
    below `root`, the frame of a multi-frame file, a series' levels)."""
    return load_input(root / entry.path, spec, entry.frame, entry.levels)
