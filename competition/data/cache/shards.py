"""Encoded images in a few large shard files, with an offset index: random
access to one image is one slice of a memory-mapped shard, without a file
per image (752,803 small files cost more in inodes and opens than in bytes).

In a cache split folder (see `cache.py` for the contract around it):

- `shards/NNNNN.bin`: encoded images back to back, a new file every
  SHARD_BYTES;
- `shard.npy`, `offset.npy`, `length.npy`: where each row's bytes are
  (`crc.npy`, the CRC-32 of those bytes, and `state.npy` are the cache's own).

Only the building process appends, and only at the end of the last shard. A
row counts once its bytes are in the file (written before its state says
done), so a killed build leaves at most some unreferenced bytes at the end,
which the next build cuts off; a row whose bytes were damaged later fails its
CRC and is appended again.
"""

from __future__ import annotations

import mmap
import os
import zlib
from pathlib import Path

import numpy as np

SHARD_BYTES = 1 << 30
INDEX = {"shard": np.int32, "offset": np.int64, "length": np.uint32}


def start(folder: Path, rows: int) -> None:
    (folder / "shards").mkdir()
    for name, dtype in INDEX.items():
        np.save(folder / f"{name}.npy", np.zeros(rows, dtype))


def can_resume(folder: Path, rows: int) -> bool:
    try:
        return all(
            np.load(folder / f"{name}.npy", mmap_mode="r").shape == (rows,) for name in INDEX
        )
    except (OSError, ValueError):
        return False


def index_of(folder: Path, mode: str = "r") -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy", mmap_mode=mode) for name in INDEX}


def shard_path(folder: Path, shard: int) -> Path:
    return folder / "shards" / f"{shard:05d}.bin"


def stored_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in (folder / "shards").glob("*.bin"))


class ShardWriter:
    """Appends entries for the building process and records where they went."""

    def __init__(self, folder: Path, done: np.ndarray, shard_bytes: int = SHARD_BYTES):
        self.folder, self.shard_bytes = folder, shard_bytes
        self.index = index_of(folder, "r+")
        self.shard, end = self._live_end(done)
        path = shard_path(folder, self.shard)
        self.handle = open(path, "ab")
        self.handle.truncate(end)  # bytes no row refers to: a killed build's last chunk
        self.handle.seek(end)

    def _live_end(self, done: np.ndarray) -> tuple[int, int]:
        """The last shard in use and the end of its last entry that counts."""
        rows = np.flatnonzero(done)
        if not len(rows):
            return 0, 0
        shard = int(self.index["shard"][rows].max())
        rows = rows[self.index["shard"][rows] == shard]
        ends = self.index["offset"][rows].astype(np.int64) + self.index["length"][rows]
        return shard, int(ends.max())

    def append(self, row: int, data: bytes) -> int:
        """Writes one entry; returns the CRC-32 of its bytes."""
        if self.handle.tell() and self.handle.tell() + len(data) > self.shard_bytes:
            self.handle.close()
            self.shard += 1
            self.handle = open(shard_path(self.folder, self.shard), "ab")
        self.index["shard"][row], self.index["offset"][row] = self.shard, self.handle.tell()
        self.index["length"][row] = len(data)
        self.handle.write(data)
        return zlib.crc32(data)

    def flush(self) -> None:
        """Entries in the operating system's hands (a killed process loses
        nothing after this) before their rows are marked done."""
        self.handle.flush()

    def sync(self) -> None:
        self.flush()
        os.fsync(self.handle.fileno())
        for array in self.index.values():
            array.flush()

    def close(self) -> None:
        self.sync()
        self.handle.close()


class ShardReader:
    """The stored bytes of a row, from memory-mapped shards opened on first
    use in the reading process (it pickles small for worker processes)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.index = {name: np.load(folder / f"{name}.npy") for name in INDEX}
        self._maps: dict[int, mmap.mmap] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}

    def _map(self, shard: int) -> mmap.mmap:
        if shard not in self._maps:
            with open(shard_path(self.folder, shard), "rb") as handle:
                self._maps[shard] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self._maps[shard]

    def read(self, row: int) -> memoryview:
        start = int(self.index["offset"][row])
        stop = start + int(self.index["length"][row])
        data = memoryview(self._map(int(self.index["shard"][row])))[start:stop]
        if len(data) != stop - start:
            raise EOFError(f"shard {shard_path(self.folder, int(self.index['shard'][row]))} ends early")
        return data
