"""The preprocessed image cache: every image of a split read from its file,
windowed and resized once, in parallel, into one memory-mapped uint8 array.

Why one `.npy` memory map per split: reading a random sample is one slice of
the file (no container to decode, no file to open per image), the operating
system's page cache does the caching, and the process's own memory does not
grow with the dataset. Compressed stores (PNG, npz) cost a decode per read;
TFRecord has no random access; HDF5 and LMDB are not in the kit's stack.

`<data.root>/<data.cache_dir>/<size>px-<channels>ch-<key>/<split>/`:

- `images.npy`: (N, H, W, C) uint8.
- `ids.csv`: the image ID of each row; `source.json`: the image folder and
  the settings the key was made from.
- `state.npy`: per row 0 = to do, 1 = done, 2 = unreadable; `crc.npy`: the
  CRC-32 of each done row. A worker has written its rows before the parent marks
  them done, so a kill leaves rows to redo, never rows marked done and empty
  (pixels written to a shared map survive a killed process); a resumed build
  re-checks every done row against its CRC and redoes those that differ, which
  also catches what a machine crash lost before it reached the disk.
- `unreadable.jsonl`: ID and reason of each image left out.
- `complete.json`: written last; only a split with it is ever served.

The key covers everything that changes the pixels: windows, size, the
reader's version and pixel fixes. Other settings get another folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import Config
from competition.data.dicom import PIXEL_FIXES, READER_VERSION
from competition.data.index import read_index
from competition.data.preprocess import PixelSpec, input_shape, load_input
from competition.errors import ImageReadError, KitError
from competition.fileio import is_disk_full, write_csv_atomic, write_text_atomic
from competition.layout import Layout
from competition.progress import Progress
from competition.workers import worker_count, worker_pool

FORMAT_VERSION = 1
TODO, DONE, UNREADABLE = 0, 1, 2
CHUNK = 64  # rows per worker task


class CacheError(KitError, ValueError):
    """A cache that is missing, unfinished, or not for these settings."""


# --- where, and for which settings -----------------------------------------


def settings(config: Config) -> dict:
    """Everything that changes the cached pixels."""
    spec = PixelSpec.from_config(config)
    made_from = {
        "image_format": spec.image_format,
        "mode": spec.mode,
        "shape": list(spec.shape),
        "keep_aspect": spec.keep_aspect,
        "crop": spec.crop,
        "channels": spec.input_shape[2],
        "reader_version": READER_VERSION,
        "pixel_fixes": list(PIXEL_FIXES),
        "format_version": FORMAT_VERSION,
    }
    if spec.mode == "ct_windows":
        made_from["windows"] = [list(w) for w in spec.windows]
    return made_from


def cache_root(config: Config) -> Path:
    """<data.root>/<data.cache_dir>/<rows>x<cols>-<channels>ch-<key>/"""
    made_from = settings(config)
    key = hashlib.sha1(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:10]
    rows, cols = made_from["shape"]
    name = f"{rows}x{cols}-{made_from['channels']}ch-{key}"
    return Layout.from_config(config).root / config.data.cache_dir / name


def split_dir(config: Config, split: str) -> Path:
    return cache_root(config) / split


def _source_record(config: Config, split: str) -> dict:
    folder = Layout.from_config(config).image_dir(split)
    return {"images": str(folder.resolve()), "settings": settings(config)}


def is_complete(config: Config, split: str) -> bool:
    """A finished cache of this split's folder with these settings."""
    folder = split_dir(config, split)
    if not (folder / "complete.json").is_file():
        return False
    recorded = json.loads((folder / "source.json").read_text())
    return recorded == _source_record(config, split)


# --- building ---------------------------------------------------------------


def read_unreadable(folder: Path) -> dict[str, str]:
    """ID -> reason; a line cut short by a kill is ignored (its row is redone)."""
    found = {}
    path = folder / "unreadable.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            found[entry["image_id"]] = entry["reason"]
    return found


def _record_unreadable(folder: Path, image_id: str, reason: str) -> None:
    with open(folder / "unreadable.jsonl", "a") as handle:
        handle.write(json.dumps({"image_id": image_id, "reason": reason}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _start(folder: Path, ids: list[str], shape: tuple, record: dict) -> None:
    """A fresh, empty cache folder for `ids` (anything there before is removed)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    images = np.lib.format.open_memmap(folder / "images.npy", "w+", np.uint8, (len(ids), *shape))
    images.flush()
    del images
    _allocate(folder / "images.npy")
    np.save(folder / "state.npy", np.zeros(len(ids), np.uint8))
    np.save(folder / "crc.npy", np.zeros(len(ids), np.uint32))
    write_csv_atomic(folder / "ids.csv", pd.DataFrame({"image_id": ids}))
    write_text_atomic(folder / "source.json", json.dumps(record, indent=2))


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


def _can_resume(folder: Path, ids: list[str], shape: tuple, record: dict) -> bool:
    try:
        same_ids = pd.read_csv(folder / "ids.csv", dtype=str)["image_id"].tolist() == ids
        images = np.load(folder / "images.npy", mmap_mode="r")
        recorded = json.loads((folder / "source.json").read_text())
    except (OSError, ValueError, KeyError):
        return False
    return same_ids and images.shape == (len(ids), *shape) and recorded == record


def images_of(folder: Path, mode: str = "r+") -> np.memmap:
    return np.load(folder / "images.npy", mmap_mode=mode)


def verify(folder: Path) -> list[int]:
    """Rows marked done whose pixels no longer match their CRC; they are
    marked to do again (and the cache as unfinished)."""
    images = np.load(folder / "images.npy", mmap_mode="r")
    state = np.load(folder / "state.npy", mmap_mode="r+")
    crc = np.load(folder / "crc.npy", mmap_mode="r")
    bad = [int(r) for r in np.flatnonzero(state == DONE) if zlib.crc32(images[r]) != crc[r]]
    if bad:
        (folder / "complete.json").unlink(missing_ok=True)
        state[bad] = TODO
        state.flush()
    return bad


_worker: dict = {}


def _init_worker(folder: Path, root: Path, spec: PixelSpec) -> None:
    _worker.update(images=np.load(folder / "images.npy", mmap_mode="r+"), root=root, spec=spec)


def _fill(job: tuple[np.ndarray, list[str], list[str]]) -> tuple[np.ndarray, list, list]:
    """Decode the rows into the shared array; their CRCs go to the parent."""
    rows, ids, paths = job
    images, crcs, failed = _worker["images"], [], []
    for row, image_id, path in zip(rows, ids, paths, strict=True):
        try:
            image = load_input(_worker["root"] / path, _worker["spec"])
        except ImageReadError as exc:
            failed.append((int(row), image_id, exc.cause))
            crcs.append(0)
            continue
        images[row] = image
        crcs.append(zlib.crc32(image))
    # No msync here: a killed process loses nothing written to a shared map,
    # and what a machine crash loses fails its CRC on resume and is redone.
    return rows, crcs, failed


def split_ids(config: Config, split: str) -> tuple[list[str], list[str], dict[str, str]]:
    """(every image ID of the split in the index, their paths below
    data.root, {ID: reason} of those the index already found unreadable)."""
    index = read_index(Layout.from_config(config))
    rows = index[index["split"] == split]
    bad = rows[~rows["readable"]]
    known_bad = dict(zip(bad["image_id"], bad["reason"], strict=True))
    return rows["image_id"].tolist(), rows["path"].tolist(), known_bad


def _skip_known_unreadable(folder: Path, ids: list[str], known_bad: dict[str, str]) -> None:
    state = np.load(folder / "state.npy", mmap_mode="r+")
    recorded = read_unreadable(folder)
    for row in np.flatnonzero(state == TODO):
        if ids[row] in known_bad:
            if ids[row] not in recorded:
                _record_unreadable(folder, ids[row], known_bad[ids[row]])
            state[row] = UNREADABLE
    state.flush()


def _fill_todo(
    config: Config, split: str, folder: Path, ids: list[str], paths: list[str], workers: int
) -> float:
    """Decode every row still to do, in parallel; returns images/s."""
    state = np.load(folder / "state.npy", mmap_mode="r+")
    crc = np.load(folder / "crc.npy", mmap_mode="r+")
    todo = np.flatnonzero(state == TODO)
    chunks = np.array_split(todo, -(-len(todo) // CHUNK)) if len(todo) else []
    jobs = [(rows, [ids[r] for r in rows], [paths[r] for r in rows]) for rows in chunks]
    progress = Progress(len(todo), f"cache {split}", unit="images")
    root = Layout.from_config(config).root
    setup = (folder, root, PixelSpec.from_config(config))
    with worker_pool(workers, initializer=_init_worker, initargs=setup) as pool:
        for rows, crcs, failed in pool.map(_fill, jobs):
            for _, image_id, reason in failed:
                _record_unreadable(folder, image_id, reason)
            crc[rows] = crcs  # after the worker's pixels, before the rows count as done
            state[rows] = DONE
            state[[row for row, _, _ in failed]] = UNREADABLE
            progress.advance(len(rows))
    for done in (images_of(folder), crc, state):  # on disk before complete.json
        done.flush()
    progress.close()
    return progress.rate


def build_split(config: Config, split: str, workers: int = 0) -> dict | None:
    """Build (or finish) the cache of one split; returns its summary."""
    ids, paths, known_bad = split_ids(config, split)
    if not ids:
        return None
    folder, record, shape = (
        split_dir(config, split),
        _source_record(config, split),
        input_shape(config),
    )
    redone = 0
    if not _can_resume(folder, ids, shape, record):  # other IDs or settings: start afresh
        _start(folder, ids, shape, record)
    elif (folder / "complete.json").is_file():
        return summary(folder, "up to date")
    else:  # an interrupted build: re-check what it finished
        redone = len(verify(folder))
    _skip_known_unreadable(folder, ids, known_bad)
    n = worker_count(workers)
    rate = _fill_todo(config, split, folder, ids, paths, n)
    result = summary(folder, "built", images_per_second=round(rate, 1), workers=n, redone=redone)
    write_text_atomic(folder / "complete.json", json.dumps(result, indent=2))
    return result


def summary(folder: Path, status: str, **extra) -> dict:
    state = np.load(folder / "state.npy", mmap_mode="r")
    return {
        "folder": str(folder),
        "status": status,
        "images": int((state == DONE).sum()),
        "unreadable": int((state == UNREADABLE).sum()),
        "bytes": (folder / "images.npy").stat().st_size,
        **extra,
    }


def build(config: Config, splits: list[str], workers: int = 0) -> list[dict]:
    results = []
    for split in splits:
        try:
            result = build_split(config, split, workers)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise _no_space(config, split) from exc
        if result:
            results.append(result)
    return results


def _no_space(config: Config, split: str) -> CacheError:
    images = len(split_ids(config, split)[0])
    size = images * int(np.prod(input_shape(config)))
    return CacheError(
        f"No space left for the {split} cache at {split_dir(config, split)}: it needs "
        f"{size / 2**20:,.1f} MiB ({images} images of {input_shape(config)} bytes). Finished "
        "caches are intact and an unfinished one is never served (the DICOM files are read "
        "instead). Free some space or set data.cache_dir to another disk, then run "
        "`make cache` again: it goes on from where it stopped."
    )


# --- reading ----------------------------------------------------------------


class CacheSource:
    """Images from a finished cache split. IDs it does not hold are read from
    their files (`files`, an ImageSource) when `fallback` is on; unreadable
    ones raise ImageReadError like the file path. The array is opened
    lazily, so the source pickles small (process workers open their own map)."""

    def __init__(self, folder: Path, files, fallback: bool = True):
        self.folder, self.files, self.fallback = Path(folder), files, fallback
        self.layout, self.split = files.layout, files.split
        self.index = pd.Index(pd.read_csv(self.folder / "ids.csv", dtype=str)["image_id"])
        self.state = np.load(self.folder / "state.npy")
        self.unreadable = read_unreadable(self.folder)
        self.shape = tuple(np.load(self.folder / "images.npy", mmap_mode="r").shape[1:])
        self._images = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:  # a plain ndarray over the map: cheaper to index
            self._images = np.asarray(np.load(self.folder / "images.npy", mmap_mode="r"))
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def _missing(self, image_id: str) -> np.ndarray:
        if self.fallback:
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
        return self.images[row]

    def locate(self, image_ids) -> np.ndarray:
        """Cache row of each ID; -1 where it is not held or not readable."""
        rows = self.index.get_indexer(image_ids)
        rows[(rows >= 0) & (self.state[np.maximum(rows, 0)] != DONE)] = -1
        return rows

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(B, H, W, C) uint8 copies of the given cache rows, in one read."""
        return self.images[rows]

    def gather(self, image_ids) -> np.ndarray | None:
        """(B, H, W, C) uint8 for the IDs, or None when one is not a plain hit."""
        rows = self.locate(image_ids)
        return None if (rows < 0).any() else self.take(rows)
