"""Where model inputs come from: an image ID -> a windowed, resized uint8
(H, W, C) array, read from the image file (`ImageSource`) or from the
preprocessed cache (`competition.data.cache.CacheSource`), with the same
result for the same ID. `open_source` picks one as `data.source` says."""

from __future__ import annotations

import numpy as np

from competition.data.preprocess import PixelSpec, input_shape, load_input
from competition.layout import ImagePaths, Layout


class ImageSource:
    """Reads each image from its file (raises ImageReadError on a bad one)."""

    def __init__(self, paths: ImagePaths, spec: PixelSpec):
        self.paths, self.split, self.spec = paths, paths.split, spec

    @property
    def layout(self) -> Layout:
        return self.paths.layout

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape

    def load(self, image_id: str) -> np.ndarray:
        return load_input(self.paths(image_id), self.spec)


def image_source(config, split: str, fields=None) -> ImageSource:
    """The split's images read from their files; `fields`: see ImagePaths."""
    paths = ImagePaths(Layout.from_config(config), split, fields)
    return ImageSource(paths, PixelSpec.from_config(config))


def open_source(config, split: str, fields=None):
    """The model inputs of a split: single slices from where data.source says
    (see slice_source), stacked with their neighbours for 2.5D input."""
    from competition.data.neighbors import with_neighbors

    return with_neighbors(config, split, slice_source(config, split, fields))


def slice_source(config, split: str, fields=None):
    """The images of a split as data.source says: `files` (decoded each time),
    `cache` (a finished cache for these settings is required), or `auto`
    (the cache when there is one, the files otherwise and for IDs it lacks)."""
    from competition.data.cache import CacheError, CacheSource, is_complete, split_dir

    files = image_source(config, split, fields)
    mode = config.data.source
    if mode == "files":
        return files
    if is_complete(config, split):
        return CacheSource(split_dir(config, split), files, fallback=mode == "auto")
    if mode == "cache":
        raise CacheError(
            f"data.source=cache but there is no finished {split} cache for these settings at "
            f"{split_dir(config, split)}. Run `make cache` first, or set data.source=auto."
        )
    return files


def cache_note(config, split: str, command: str = "make cache") -> str | None:
    """What to say when data.source=auto will decode the image files every
    epoch because no finished cache matches the current settings (after a
    change of windows or size, say), with the command that builds one."""
    from competition.data.cache import is_complete, split_dir

    if config.data.source != "auto" or is_complete(config, split):
        return None
    return (
        f"Reading the {split} images from their files: there is no finished cache for these "
        f"settings ({split_dir(config, split)}), so every image is decoded again each epoch. "
        f"`{command}` with the same CONFIG/ARGS builds it once (or set data.build_cache: true)."
    )


__all__ = ["ImageSource", "image_source", "input_shape", "open_source"]
