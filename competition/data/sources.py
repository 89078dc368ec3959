"""Where model inputs come from: an image ID -> a windowed, resized uint8
(H, W, C) array, read from the image file (`ImageSource`) or from the
preprocessed cache (`competition.data.cache.CacheSource`), with the same
result for the same ID. `open_source` picks one as `data.source` says."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from competition.data.preprocess import input_shape, load_windowed
from competition.layout import ImagePaths, Layout


class ImageSource:
    """Reads each image from its file (raises DicomReadError on a bad one)."""

    def __init__(self, paths: ImagePaths, windows: Sequence[Sequence[float]], size: int):
        self.paths, self.split = paths, paths.split
        self.windows, self.size = [list(w) for w in windows], size

    @property
    def layout(self) -> Layout:
        return self.paths.layout

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.size, self.size, len(self.windows)

    def load(self, image_id: str) -> np.ndarray:
        return load_windowed(self.paths(image_id), self.windows, self.size)


def image_source(config, split: str, fields=None) -> ImageSource:
    """The split's images read from their files; `fields`: see ImagePaths."""
    paths = ImagePaths(Layout.from_config(config), split, fields)
    return ImageSource(paths, config.preprocess.windows, config.preprocess.image_size)


def open_source(config, split: str, fields=None):
    """The images of a split as data.source says: `dicom` (the files),
    `cache` (a finished cache for these settings is required), or `auto`
    (the cache when there is one, the files otherwise and for IDs it lacks)."""
    from competition.data.cache import CacheError, CacheSource, is_complete, split_dir

    files = image_source(config, split, fields)
    mode = config.data.source
    if mode == "dicom":
        return files
    if is_complete(config, split):
        return CacheSource(split_dir(config, split), files, fallback=mode == "auto")
    if mode == "cache":
        raise CacheError(
            f"data.source=cache but there is no finished {split} cache for these settings at "
            f"{split_dir(config, split)}. Run `make cache` first, or set data.source=auto."
        )
    return files


__all__ = ["ImageSource", "image_source", "input_shape", "open_source"]
