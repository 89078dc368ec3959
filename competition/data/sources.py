"""Where model inputs come from: an image ID -> a windowed, resized uint8
(H, W, C) array, read from the image file (`ImageSource`) or from the
preprocessed cache (`competition.data.cache.source.CacheSource`), with the
same result for the same ID, and stacked with its neighbours for 2.5D input
(`competition.data.neighbors`). `InputSpec` holds what that takes;
`open_source` picks the reader as `data.source` says."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from competition.data.cache.spec import CacheError, CacheSpec
from competition.data.pixelspec import PixelSpec, PreprocessConfig
from competition.data.preprocess import load_input
from competition.data.settings import DataConfig
from competition.errors import KitError
from competition.layout import ImagePaths, Layout


@dataclass(frozen=True)
class InputSpec:
    """Everything that turns an image ID into model input."""

    cache: CacheSpec  # the images' layout, the pixel settings, the cache
    read_from: str  # data.source: auto (the cache when finished), cache, files
    neighbors: int = 0  # preprocess.neighbors: slices on each side (2.5D)
    neighbor_windows: list | None = None  # preprocess.neighbor_windows
    workers: int = 0  # processes to read headers with where there is no index
    slices: int = 1  # series.slices: a unit's stack (series- and study-level tasks)
    spacing: str = "resample"  # series.spacing: how T slices are picked from a unit

    @classmethod
    def of(
        cls,
        cache: CacheSpec,
        data: DataConfig,
        preprocess: PreprocessConfig,
        slices: int = 1,
        spacing: str = "resample",
    ) -> InputSpec:
        return cls(
            cache,
            data.source,
            preprocess.neighbors,
            preprocess.neighbor_windows,
            data.workers,
            slices,
            spacing,
        )

    @property
    def layout(self) -> Layout:
        return self.cache.layout

    @property
    def pixels(self) -> PixelSpec:
        return self.cache.pixels


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


class EntrySource:
    """A unit task's slices read from their files by their header-index
    entries (path, frame of a multi-frame file, a series' levels): a
    split's, or one series folder's in a Kaggle kernel (`layout` None)."""

    def __init__(self, root, entries: dict, pixels: PixelSpec, split: str, layout=None):
        self.root, self.entries, self.pixels = root, entries, pixels
        self.layout, self.split, self.shape = layout, split, pixels.input_shape

    def load(self, image_id: str) -> np.ndarray:
        from competition.data.preprocess import load_entry

        if image_id not in self.entries:
            raise KitError(f"{self.split} slice {image_id!r} is not in the header index")
        return load_entry(self.root, self.entries[image_id], self.pixels)


def image_source(inputs: InputSpec, split: str, fields=None):
    """The split's images read from their files; `fields`: see ImagePaths (a
    unit's slices: their entries in the header index)."""
    if inputs.layout.task.per_unit:
        from competition.data.index import path_entries, split_index

        rows = split_index(inputs.layout, split, inputs.workers)
        entries = dict(zip(rows["image_id"], path_entries(rows), strict=True))
        return EntrySource(inputs.layout.root, entries, inputs.pixels, split, inputs.layout)
    return ImageSource(ImagePaths(inputs.layout, split, fields), inputs.pixels)


def open_source(inputs: InputSpec, split: str, fields=None):
    """The model inputs of a split: single slices from where data.source says
    (see slice_source), stacked with their neighbours for 2.5D input, and,
    for a series- or study-level task, a unit's slices stacked (UnitSource)."""
    from competition.data.neighbors import with_neighbors

    slices = with_neighbors(inputs, split, slice_source(inputs, split, fields))
    task = inputs.layout.task
    if not task.per_unit:
        return slices
    from competition.data.index import split_index
    from competition.data.units import UnitSource, unit_slices

    index = split_index(inputs.layout, split, inputs.workers)
    units = unit_slices(task, index, split, inputs.layout.root)
    return UnitSource(slices, units, inputs.slices, inputs.spacing)


def slice_source(inputs: InputSpec, split: str, fields=None):
    """The images of a split as data.source says: `files` (decoded each time),
    `cache` (a finished cache for these settings is required), or `auto`
    (the cache when there is one, the files otherwise and for IDs it lacks)."""
    from competition.data.cache.source import CacheSource

    files = image_source(inputs, split, fields)
    if inputs.read_from == "files":
        return files
    cache = inputs.cache
    if cache.is_complete(split):
        return CacheSource(cache.split_folder(split), files, inputs.read_from == "auto")
    if inputs.read_from == "cache":
        raise CacheError(
            f"data.source=cache but there is no finished {split} cache for these settings at "
            f"{cache.split_folder(split)}. Run `make cache` first, or set data.source=auto."
        )
    return files


def cache_note(inputs: InputSpec, split: str, command: str = "make cache") -> str | None:
    """What to say when data.source=auto will decode the image files every
    epoch because no finished cache matches the current settings (after a
    change of windows or size, say), with the command that builds one."""
    cache = inputs.cache
    if inputs.read_from != "auto" or cache.is_complete(split):
        return None
    return (
        f"Reading the {split} images from their files: there is no finished cache for these "
        f"settings ({cache.split_folder(split)}), so every image is decoded again each epoch. "
        f"`{command}` with the same CONFIG/ARGS builds it once (or set data.build_cache: true)."
    )
