"""Reading a finished cache split: `CacheSource`, the same model input as
the image files give (an ImageSource), a batch at a time by row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.data.cache.codecs import CodecError
from competition.data.cache.spec import DONE, CacheError, read_unreadable, store_of
from competition.errors import ImageReadError


class CacheSource:
    """Images from a finished cache split. IDs it does not hold are read from
    their files (`files`, an ImageSource) when `files_for_missing` is on;
    unreadable ones raise ImageReadError like the file path. The store is
    opened lazily, so the source pickles small (process workers open their own)."""

    def __init__(self, folder: Path, files, files_for_missing: bool = True):
        self.folder, self.files = Path(folder), files
        self.files_for_missing = files_for_missing
        self.layout, self.split = files.layout, files.split
        self.index = pd.Index(pd.read_csv(self.folder / "ids.csv", dtype=str)["image_id"])
        self.state = np.load(self.folder / "state.npy")
        self.crc = np.load(self.folder / "crc.npy")
        self.unreadable = read_unreadable(self.folder)
        self.store = store_of(self.folder)
        self.shape = self.store.shape

    @property
    def codec(self) -> str:
        return self.store.codec

    @property
    def cheap_take(self) -> bool:
        """A batch is one memory copy (raw), not a decode per image."""
        return self.codec == "raw"

    def _missing(self, image_id: str) -> np.ndarray:
        if self.files_for_missing:
            return self.files.load(image_id)
        raise CacheError(
            f"Image {image_id} is not in the cache at {self.folder} (built from the index "
            "of data.root). Rebuild it with `make cache`, or set data.source=auto."
        )

    def load(self, image_id: str) -> np.ndarray:
        row = self.index.get_indexer([image_id])[0]
        if row < 0:
            return self._missing(image_id)
        if self.state[row] != DONE:
            reason = self.unreadable.get(image_id, "not decoded into the cache")
            raise ImageReadError(self.layout.image_dir(self.split) / image_id, reason)
        return self.take(np.array([row]))[0]

    def locate(self, image_ids) -> np.ndarray:
        """Cache row of each ID; -1 where it is not held or not readable."""
        rows = self.index.get_indexer(image_ids)
        rows[(rows >= 0) & (self.state[np.maximum(rows, 0)] != DONE)] = -1
        return rows

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(B, H, W, C) uint8 copies of the given cache rows."""
        try:
            return self.store.take(rows, self.crc)
        except (CodecError, OSError, EOFError, ValueError) as exc:
            shown = ", ".join(self.index[np.asarray(rows)[:4]])
            raise CacheError(
                f"The {self.codec} cache at {self.folder} has a damaged entry among images "
                f"{shown} ({exc}). Run `python -m competition cache --verify` (make cache "
                "ARGS=--verify): it finds the damaged entries and rebuilds them."
            ) from exc

    def gather(self, image_ids) -> np.ndarray | None:
        """(B, H, W, C) uint8 for the IDs, or None when one is not a plain hit."""
        rows = self.locate(image_ids)
        return None if (rows < 0).any() else self.take(rows)
