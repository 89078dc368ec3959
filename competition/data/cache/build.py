"""Building a split's cache: every image of the split (as the header index
lists it) read from its file, windowed and resized once, in parallel, into
a store read by row (`store.py`: a raw memory map or encoded shards, with
the codec `plan.py` chose for the disk).

A cache split's folder holds:

- `images.npy` (raw) or `shards/` with its index (encoded);
- `ids.csv`: the image ID of each row; `source.json`: the image folder and
  the settings the key was made from;
- `state.npy`: per row 0 = to do, 1 = done, 2 = unreadable; `crc.npy`: the
  CRC-32 of each done row as stored. A row is in the store (a worker's pixels
  written at its place, or the parent's bytes in a shard) before the parent
  marks it done, so a kill leaves rows to redo, never rows marked done and
  empty; a resumed build re-checks every done row against its CRC and redoes
  those that differ, which also catches what a machine crash lost before it
  reached the disk;
- `unreadable.jsonl`: ID and reason of each image left out;
- `complete.json`: written last; only a split with it is ever served.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from competition.data.cache import plan
from competition.data.cache.spec import (
    DONE,
    MADE_FROM,
    TODO,
    UNREADABLE,
    CacheError,
    CacheSpec,
    read_unreadable,
    store_of,
)
from competition.data.cache.store import open_store
from competition.data.index import path_entries, read_index
from competition.data.pixelspec import PixelSpec
from competition.data.preprocess import load_entry
from competition.errors import ImageReadError
from competition.fileio import is_disk_full, write_csv_atomic, write_text_atomic
from competition.locks import exclusive
from competition.progress import Progress
from competition.workers import worker_count, worker_pool

CHUNK = 64  # rows per worker task


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
    write_text_atomic(folder / MADE_FROM, json.dumps(record, indent=2))


def _can_resume(store, ids: list[str], record: dict) -> bool:
    folder = store.folder
    try:
        same_ids = pd.read_csv(folder / "ids.csv", dtype=str)["image_id"].tolist() == ids
        recorded = json.loads((folder / MADE_FROM).read_text())
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
            image = load_entry(_worker["root"], path, _worker["spec"])
        except ImageReadError as exc:
            failed.append((int(row), image_id, exc.cause))
            payloads.append(None)
            continue
        payloads.append(store.put(int(row), image))
    # No fsync here: a killed process loses nothing handed to the kernel,
    # and what a machine crash loses fails its CRC on resume and is redone.
    return rows, payloads, failed


def split_ids(spec: CacheSpec, split: str) -> tuple[list[str], list[str], dict[str, str]]:
    """(every image ID of the split in the index, their paths below
    data.root (a frame's: (path, frame)), {ID: reason} of those the index
    already found unreadable)."""
    index = read_index(spec.layout)
    rows = index[index["split"] == split]
    bad = rows[~rows["readable"]]
    known_bad = dict(zip(bad["image_id"], bad["reason"], strict=True))
    return rows["image_id"].tolist(), path_entries(rows), known_bad


def _skip_known_unreadable(folder: Path, ids: list[str], known_bad: dict[str, str]) -> None:
    state = np.load(folder / "state.npy", mmap_mode="r+")
    recorded = read_unreadable(folder)
    for row in np.flatnonzero(state == TODO):
        if ids[row] in known_bad:
            if ids[row] not in recorded:
                _record_unreadable(folder, ids[row], known_bad[ids[row]])
            state[row] = UNREADABLE
    state.flush()


def _fill_todo(spec: CacheSpec, split: str, store, ids: list[str], paths: list[str], workers: int):
    """Decode every row still to do, in parallel; returns images/s."""
    folder = store.folder
    state = np.load(folder / "state.npy", mmap_mode="r+")
    crc = np.load(folder / "crc.npy", mmap_mode="r+")
    todo = np.flatnonzero(state == TODO)
    chunks = np.array_split(todo, -(-len(todo) // CHUNK)) if len(todo) else []
    jobs = [(rows, [ids[r] for r in rows], [paths[r] for r in rows]) for rows in chunks]
    progress = Progress(len(todo), f"cache {split}", unit="images")
    setup = (store, spec.layout.root, spec.pixels)
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


def build_split(spec: CacheSpec, split: str, workers: int = 0) -> dict | None:
    """Build (or finish) the cache of one split; returns its summary. One
    build per split and settings at a time (whatever the codec)."""
    ids, paths, known_bad = split_ids(spec, split)
    if not ids:
        return None
    key = spec.root().name
    with exclusive(spec.root().parent, f"the {split} cache", f".{key}-{split}.lock"):
        return _build_split(spec, split, workers, ids, paths, known_bad)


def _build_split(spec: CacheSpec, split: str, workers: int, ids, paths, known_bad) -> dict:
    shape, quality = spec.pixels.input_shape, spec.quality
    codec = spec.existing_codec(split)
    store = codec and open_store(spec.root(codec) / split, shape, codec, quality)
    record = codec and spec.made_from_record(split, codec)
    redone = 0
    if not codec or not _can_resume(store, ids, record):  # other IDs or settings: start afresh
        if codec:
            shutil.rmtree(store.folder)  # its room counts as free for the plan
        codec = plan.plan_codec(spec, split, ids, paths).codec
        store = open_store(spec.root(codec) / split, shape, codec, quality)
        record = spec.made_from_record(split, codec)
        _start(store, ids, record)
    elif (store.folder / "complete.json").is_file():
        return summary(store, "up to date")
    else:  # an interrupted build: re-check what it finished
        redone = len(verify(store.folder))
    _skip_known_unreadable(store.folder, ids, known_bad)
    n = worker_count(workers)
    rate = _fill_todo(spec, split, store, ids, paths, n)
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


def build(spec: CacheSpec, splits: list[str], workers: int = 0) -> list[dict]:
    results = []
    for split in splits:
        try:
            result = build_split(spec, split, workers)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise _no_space(spec, split) from exc
        if result:
            results.append(result)
    return results


def _no_space(spec: CacheSpec, split: str) -> CacheError:
    images = len(split_ids(spec, split)[0])
    folder = spec.split_folder(split)
    return CacheError(
        f"No space left for the {split} cache at {folder} ({images} images). Finished "
        "caches are intact and an unfinished one is never served (the image files are read "
        "instead). Free some space, set data.cache_dir to another disk, or choose a smaller "
        "data.cache_codec (zstd, jpeg), then run `make cache` again: the same codec goes on "
        "from where it stopped."
    )


