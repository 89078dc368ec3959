"""The preprocessed image cache: every image of a split read from its file,
windowed and resized once, in parallel, into a store read by row.

Two stores (`cache_store.py`, chosen by `data.cache_codec`): `raw`, one
memory-mapped `.npy` uint8 array (reading a batch is one slice of a file; the
operating system's page cache does the caching; 196 KB per 256 x 256 x 3
image), and encoded images (`zstd`, `png`, `jpeg`) in large shard files with an
offset index (`shards.py`), several times smaller for a decode per read.
`auto` picks from the projected size and the free space (`cache_plan.py`).

`<data.root>/<data.cache_dir>/<size>px-<channels>ch-<key>/<split>/`:

- `images.npy` (raw) or `shards/` with its index (encoded).
- `ids.csv`: the image ID of each row; `source.json`: the image folder and
  the settings the key was made from.
- `state.npy`: per row 0 = to do, 1 = done, 2 = unreadable; `crc.npy`: the
  CRC-32 of each done row as stored. A row is in the store (a worker's pixels
  in the shared map, or the parent's bytes in a shard) before the parent
  marks it done, so a kill leaves rows to redo, never rows marked done and
  empty; a resumed build re-checks every done row against its CRC and redoes
  those that differ, which also catches what a machine crash lost before it
  reached the disk.
- `unreadable.jsonl`: ID and reason of each image left out.
- `complete.json`: written last; only a split with it is ever served.

The key covers everything that changes the stored bytes: windows, size, the
reader's version and pixel fixes, the codec. Other settings get another folder.
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
from competition.data.cache_store import open_store
from competition.data.codecs import STORED, CodecError
from competition.data.dicom import PIXEL_FIXES, READER_VERSION
from competition.data.index import read_index
from competition.data.preprocess import PixelSpec, input_shape, load_input
from competition.errors import ImageReadError, KitError
from competition.fileio import is_disk_full, write_csv_atomic, write_text_atomic
from competition.layout import Layout
from competition.locks import exclusive
from competition.progress import Progress
from competition.workers import worker_count, worker_pool

FORMAT_VERSION = 1
TODO, DONE, UNREADABLE = 0, 1, 2
CHUNK = 64  # rows per worker task
AUTO_ORDER = ("raw", "zstd", "jpeg", "png")  # a finished cache of any of these serves `auto`


class CacheError(KitError, ValueError):
    """A cache that is missing, unfinished, or not for these settings."""


# --- where, and for which settings -----------------------------------------


def settings(config: Config, codec: str = "raw") -> dict:
    """Everything that changes the stored bytes."""
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
    if codec != "raw":  # raw caches keep the key they had before codecs existed
        made_from["codec"] = codec
        if codec == "jpeg":
            made_from["quality"] = config.data.cache_quality
    return made_from


def cache_root(config: Config, codec: str = "raw") -> Path:
    """<data.root>/<data.cache_dir>/<rows>x<cols>-<channels>ch-<key>/"""
    made_from = settings(config, codec)
    key = hashlib.sha1(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:10]
    rows, cols = made_from["shape"]
    name = f"{rows}x{cols}-{made_from['channels']}ch-{key}"
    return Layout.from_config(config).root / config.data.cache_dir / name


def candidate_codecs(config: Config) -> tuple[str, ...]:
    codec = config.data.cache_codec
    return AUTO_ORDER if codec == "auto" else (codec,)


def existing_codec(config: Config, split: str) -> str | None:
    """The codec of this split's finished cache for these settings, else of an
    unfinished one (a build goes on with it), else None."""
    for finished in (True, False):
        for codec in candidate_codecs(config):
            folder = cache_root(config, codec) / split
            if (folder / "complete.json").is_file() if finished else folder.is_dir():
                return codec
    return None


def split_dir(config: Config, split: str, codec: str | None = None) -> Path:
    """The cache folder of a split: of `codec`, or of the cache there is."""
    fallback = config.data.cache_codec if config.data.cache_codec != "auto" else "raw"
    return cache_root(config, codec or existing_codec(config, split) or fallback) / split


def _source_record(config: Config, split: str, codec: str) -> dict:
    folder = Layout.from_config(config).image_dir(split)
    return {"images": str(folder.resolve()), "settings": settings(config, codec)}


def is_complete(config: Config, split: str) -> bool:
    """A finished cache of this split's folder with these settings."""
    codec = existing_codec(config, split)
    if codec is None:
        return False
    folder = cache_root(config, codec) / split
    if not (folder / "complete.json").is_file():
        return False
    recorded = json.loads((folder / "source.json").read_text())
    return recorded == _source_record(config, split, codec)


def store_of(folder: Path):
    """The store of a cache folder, as its source.json describes it."""
    made_from = json.loads((Path(folder) / "source.json").read_text())["settings"]
    shape = (*made_from["shape"], made_from["channels"])
    return open_store(folder, shape, made_from.get("codec", "raw"), made_from.get("quality", 0))


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


def _start(store, ids: list[str], record: dict) -> None:
    """A fresh, empty cache folder for `ids` (anything there before is removed)."""
    folder = store.folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    store.start(len(ids))
    np.save(folder / "state.npy", np.zeros(len(ids), np.uint8))
    np.save(folder / "crc.npy", np.zeros(len(ids), np.uint32))
    write_csv_atomic(folder / "ids.csv", pd.DataFrame({"image_id": ids}))
    write_text_atomic(folder / "source.json", json.dumps(record, indent=2))


def _can_resume(store, ids: list[str], record: dict) -> bool:
    folder = store.folder
    try:
        same_ids = pd.read_csv(folder / "ids.csv", dtype=str)["image_id"].tolist() == ids
        recorded = json.loads((folder / "source.json").read_text())
    except (OSError, ValueError, KeyError):
        return False
    return same_ids and recorded == record and store.can_resume(len(ids))


def verify(folder: Path) -> list[int]:
    """Rows marked done whose stored bytes no longer match their CRC; they
    are marked to do again (and the cache as unfinished)."""
    store = store_of(folder)
    state = np.load(folder / "state.npy", mmap_mode="r+")
    crc = np.load(folder / "crc.npy", mmap_mode="r")
    bad = [int(r) for r in np.flatnonzero(state == DONE) if store.crc_of(r) != crc[r]]
    if bad:
        (folder / "complete.json").unlink(missing_ok=True)
        state[bad] = TODO
        state.flush()
    return bad


_worker: dict = {}


def _init_worker(store, root: Path, spec: PixelSpec) -> None:
    store.open_for_workers()
    _worker.update(store=store, root=root, spec=spec)


def _fill(job: tuple[np.ndarray, list[str], list[str]]) -> tuple[np.ndarray, list, list]:
    """Decode the rows and put them in the store; what the store gives back
    (a CRC, or the encoded bytes) goes to the parent."""
    rows, ids, paths = job
    store, payloads, failed = _worker["store"], [], []
    for row, image_id, path in zip(rows, ids, paths, strict=True):
        try:
            image = load_input(_worker["root"] / path, _worker["spec"])
        except ImageReadError as exc:
            failed.append((int(row), image_id, exc.cause))
            payloads.append(None)
            continue
        payloads.append(store.put(int(row), image))
    # No fsync here: a killed process loses nothing handed to the kernel,
    # and what a machine crash loses fails its CRC on resume and is redone.
    return rows, payloads, failed


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


def _fill_todo(config: Config, split: str, store, ids: list[str], paths: list[str], workers: int):
    """Decode every row still to do, in parallel; returns images/s."""
    folder = store.folder
    state = np.load(folder / "state.npy", mmap_mode="r+")
    crc = np.load(folder / "crc.npy", mmap_mode="r+")
    todo = np.flatnonzero(state == TODO)
    chunks = np.array_split(todo, -(-len(todo) // CHUNK)) if len(todo) else []
    jobs = [(rows, [ids[r] for r in rows], [paths[r] for r in rows]) for rows in chunks]
    progress = Progress(len(todo), f"cache {split}", unit="images")
    setup = (store, Layout.from_config(config).root, PixelSpec.from_config(config))
    store.open_writer(state == DONE)
    with worker_pool(workers, initializer=_init_worker, initargs=setup) as pool:
        for rows, payloads, failed in pool.map(_fill, jobs):
            for _, image_id, reason in failed:
                _record_unreadable(folder, image_id, reason)
            stored = [i for i, payload in enumerate(payloads) if payload is not None]
            crc[rows[stored]] = [store.accept(int(rows[i]), payloads[i]) for i in stored]
            store.flush()  # the rows' bytes are stored before they count as done
            state[rows[stored]] = DONE
            state[[row for row, _, _ in failed]] = UNREADABLE
            progress.advance(len(rows))
    store.close_writer()
    for done in (crc, state):  # on disk before complete.json
        done.flush()
    progress.close()
    return progress.rate


def build_split(config: Config, split: str, workers: int = 0) -> dict | None:
    """Build (or finish) the cache of one split; returns its summary. One
    build per split and settings at a time (whatever the codec)."""
    ids, paths, known_bad = split_ids(config, split)
    if not ids:
        return None
    key = cache_root(config).name
    with exclusive(cache_root(config).parent, f"the {split} cache", f".{key}-{split}.lock"):
        return _build_split(config, split, workers, ids, paths, known_bad)


def _build_split(config: Config, split: str, workers: int, ids, paths, known_bad) -> dict:
    from competition.data.cache_plan import plan_codec

    shape, quality = input_shape(config), config.data.cache_quality
    codec = existing_codec(config, split)
    store = codec and open_store(cache_root(config, codec) / split, shape, codec, quality)
    record = codec and _source_record(config, split, codec)
    redone = 0
    if not codec or not _can_resume(store, ids, record):  # other IDs or settings: start afresh
        if codec:
            shutil.rmtree(store.folder)  # its room counts as free for the plan
        codec = plan_codec(config, split, ids, paths).codec
        store = open_store(cache_root(config, codec) / split, shape, codec, quality)
        record = _source_record(config, split, codec)
        _start(store, ids, record)
    elif (store.folder / "complete.json").is_file():
        return summary(store, "up to date")
    else:  # an interrupted build: re-check what it finished
        redone = len(verify(store.folder))
    _skip_known_unreadable(store.folder, ids, known_bad)
    n = worker_count(workers)
    rate = _fill_todo(config, split, store, ids, paths, n)
    result = summary(store, "built", images_per_second=round(rate, 1), workers=n, redone=redone)
    write_text_atomic(store.folder / "complete.json", json.dumps(result, indent=2))
    return result


def summary(store, status: str, **extra) -> dict:
    state = np.load(store.folder / "state.npy", mmap_mode="r")
    return {
        "folder": str(store.folder),
        "status": status,
        "codec": store.codec,
        "images": int((state == DONE).sum()),
        "unreadable": int((state == UNREADABLE).sum()),
        "bytes": store.stored_bytes(),
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
    folder = split_dir(config, split)
    return CacheError(
        f"No space left for the {split} cache at {folder} ({images} images). Finished "
        "caches are intact and an unfinished one is never served (the image files are read "
        "instead). Free some space, set data.cache_dir to another disk, or choose a smaller "
        "data.cache_codec (zstd, jpeg), then run `make cache` again: the same codec goes on "
        "from where it stopped."
    )


# --- reading ----------------------------------------------------------------


class CacheSource:
    """Images from a finished cache split. IDs it does not hold are read from
    their files (`files`, an ImageSource) when `fallback` is on; unreadable
    ones raise ImageReadError like the file path. The store is opened
    lazily, so the source pickles small (process workers open their own)."""

    def __init__(self, folder: Path, files, fallback: bool = True):
        self.folder, self.files, self.fallback = Path(folder), files, fallback
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
