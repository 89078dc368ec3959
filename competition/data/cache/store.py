"""How a cache split keeps its rows: `RawStore`, one memory-mapped uint8
array (the fastest to read, 196 KB per 256 x 256 x 3 image), or
`ShardStore`, encoded images in shard files (`shards.py`, `codecs.py`).

Both answer the same calls, so `build.py` builds, resumes and verifies either
the same way: `start` a folder, `can_resume` it, in each worker process
`put` a decoded image (what comes back goes to the parent), in the parent
`accept` that and get the row's CRC, and `crc_of` a stored row to check it.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from competition.data.cache import shards
from competition.data.cache.codecs import CodecError, make_codec
from competition.fileio import is_disk_full

IMAGES = "images.npy"


class RawStore:
    codec = "raw"

    def __init__(self, folder: Path, shape: tuple, quality: int = 0):
        self.folder, self.shape = Path(folder), tuple(shape)
        self._images, self._fd = None, None

    # --- the folder ------------------------------------------------------------

    def start(self, rows: int) -> None:
        images = np.lib.format.open_memmap(
            self.folder / IMAGES, "w+", np.uint8, (rows, *self.shape)
        )
        images.flush()
        del images
        _allocate(self.folder / IMAGES)

    def can_resume(self, rows: int) -> bool:
        try:
            images = np.load(self.folder / IMAGES, mmap_mode="r")
        except (OSError, ValueError):
            return False
        return images.shape == (rows, *self.shape)

    def stored_bytes(self) -> int:
        return (self.folder / IMAGES).stat().st_size

    # --- building: put in a worker, accept in the parent --------------------------

    def open_for_workers(self) -> None:
        header = np.load(self.folder / IMAGES, mmap_mode="r")
        self._offset, self._row_bytes = header.offset, int(np.prod(self.shape))
        del header
        self._fd = os.open(self.folder / IMAGES, os.O_WRONLY)

    def put(self, row: int, image: np.ndarray) -> int:
        """Written at the row's place in the file by the worker: a killed
        process loses nothing handed to the kernel, and, unlike stores
        through a map, the written pages do not stay in the worker's memory
        (its resident size stays flat however many rows it writes). The CRC
        goes to the parent."""
        if image.shape != self.shape or image.dtype != np.uint8:
            raise ValueError(
                f"a cache row is uint8 {self.shape}; received {image.dtype} {image.shape}"
            )
        image = np.ascontiguousarray(image)
        os.pwrite(self._fd, image, self._offset + row * self._row_bytes)
        return zlib.crc32(image)

    def open_writer(self, done: np.ndarray) -> None:
        pass

    def accept(self, row: int, payload: int) -> int:
        return payload

    def flush(self) -> None:
        pass

    def close_writer(self) -> None:
        np.load(self.folder / IMAGES, mmap_mode="r+").flush()

    # --- reading ---------------------------------------------------------------------

    def crc_of(self, row: int) -> int:
        return zlib.crc32(self.images[row])

    @property
    def images(self) -> np.ndarray:
        if self._images is None:  # a plain ndarray over the map: cheaper to index
            self._images = np.asarray(np.load(self.folder / IMAGES, mmap_mode="r"))
        return self._images

    def take(self, rows: np.ndarray, crcs: np.ndarray | None = None) -> np.ndarray:
        return self.images[rows]  # one read; CRCs are checked by `make cache --verify`

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None, "_fd": None}


def _allocate(path: Path) -> None:
    """Reserve the file's blocks now: writing into holes of a sparse file
    costs a filesystem allocation per page, in the workers' hot loop."""
    with open(path, "r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except OSError as exc:
            if is_disk_full(exc):
                raise
            # EOPNOTSUPP/EINVAL: a filesystem without it; the writes allocate instead.


class ShardStore:
    def __init__(self, folder: Path, shape: tuple, codec: str, quality: int = 90):
        self.folder, self.shape, self.codec, self.quality = (
            Path(folder),
            tuple(shape),
            codec,
            quality,
        )
        self._coder = self._writer = self._reader = None

    # --- the folder ------------------------------------------------------------

    def start(self, rows: int) -> None:
        shards.start(self.folder, rows)

    def can_resume(self, rows: int) -> bool:
        return shards.can_resume(self.folder, rows)

    def stored_bytes(self) -> int:
        return shards.stored_bytes(self.folder)

    # --- building: encode in a worker, append in the parent ------------------------

    def open_for_workers(self) -> None:
        pass

    @property
    def coder(self):
        if self._coder is None:  # made in the process that uses it (it does not pickle)
            self._coder = make_codec(self.codec, self.quality)
        return self._coder

    def put(self, row: int, image: np.ndarray) -> bytes:
        return self.coder.encode(image)

    def open_writer(self, done: np.ndarray) -> None:
        self._writer = shards.ShardWriter(self.folder, done)

    def accept(self, row: int, payload: bytes) -> int:
        return self._writer.append(row, payload)

    def flush(self) -> None:
        self._writer.flush()

    def close_writer(self) -> None:
        self._writer.close()

    # --- reading ---------------------------------------------------------------------

    @property
    def reader(self) -> shards.ShardReader:
        if self._reader is None:
            self._reader = shards.ShardReader(self.folder)
        return self._reader

    def crc_of(self, row: int) -> int:
        try:
            return zlib.crc32(self.reader.read(row))
        except (OSError, EOFError, ValueError):
            return -1

    def take(self, rows: np.ndarray, crcs: np.ndarray) -> np.ndarray:
        """Decoded copies of the rows (each stored row decoded once), every
        entry checked against its CRC first."""
        unique, inverse = np.unique(rows, return_inverse=True)
        out = np.empty((len(unique), *self.shape), np.uint8)
        for i, row in enumerate(unique.tolist()):
            data = self.reader.read(row)
            if zlib.crc32(data) != crcs[row]:
                raise CodecError(f"entry {row} fails its CRC-32 check")
            out[i] = self.coder.decode(data, self.shape)
        return out[inverse.reshape(-1)]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_coder": None, "_writer": None, "_reader": None}


def open_store(folder: Path, shape: tuple, codec: str, quality: int = 90):
    if codec == "raw":
        return RawStore(folder, shape)
    return ShardStore(folder, shape, codec, quality)
