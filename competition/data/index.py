"""The header index: one pass over every image file's header (no pixel
decoding), in parallel, into `index.csv`: the image ID, its split and path
(below data.root), patient/study/series, z, the frame of a multi-frame file
(a series- or study-level task expands one into a row per frame), the
slice's rank in its series, size, modality and orientation, and whether the
pixels can be read (and why not). For a series- or study-level task the
slices are then checked as volumes (competition.data.volumes: a slice whose
orientation or size differs from its series' is left out, and MR series get
their intensity levels).

The files are those the task's path template matches in each split's
folder; the template's ID field (and every other field) is read back from
each file's path."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from competition.data import hdf5, raster
from competition.data.dicom import read_header
from competition.errors import ImageReadError, KitError
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.ids import UnsafeIdError, check_image_id
from competition.layout import SPLITS, Layout
from competition.progress import Progress
from competition.workers import worker_count, worker_pool

COLUMNS = [
    "image_id",
    "split",
    "path",
    "patient_id",
    "study_id",
    "series_id",
    "z",
    "frame",
    "slice_rank",
    "rows",
    "cols",
    "modality",
    "orientation",
    "level_low",
    "level_high",
    "readable",
    "reason",
]
TEXT_COLUMNS = ["image_id", "split", "path", "patient_id", "study_id", "series_id", "modality",
                "orientation", "reason"]  # fmt: skip


class Entry(NamedTuple):
    """What reads one slice: its file below data.root, the frame of a
    multi-frame file, and the intensity levels of a slice without HU."""

    path: str
    frame: int | None = None
    levels: tuple[float, float] | None = None


class MissingTableError(KitError, FileNotFoundError):
    """A derived table (index, folds) that has not been built yet."""


def scan_file(root: Path, split: str, image_id: str, relative: str, frames: bool = False) -> list:
    """The file's index rows: one, or with `frames` one per frame of a
    multi-frame file (`<ID>.f<k>`, ordered by each frame's position, or in
    file order when the frames carry none); a file that cannot be used is
    kept with its reason."""
    row = {"image_id": image_id, "split": split, "path": relative, "readable": False, "reason": ""}
    path = root / relative
    try:
        check_image_id(image_id)
        header = read_header(path) if path.suffix.lower() == ".dcm" else _raster_header(path)
    except (UnsafeIdError, ImageReadError) as exc:
        row["reason"] = getattr(exc, "cause", str(exc))
        return [row]
    problem = header.pop("pixel_problem")
    header.pop("sop_id")
    count, positions = header.pop("frames", 1), header.pop("frame_z", None)
    row.update(header, readable=problem is None, reason=problem or "")
    if not frames or count < 2:
        return [row]
    return [
        {
            **row,
            "image_id": f"{image_id}.f{k:04d}",
            "frame": k,
            "z": positions[k] if positions else float("nan"),
        }
        for k in range(count)
    ]


def _raster_header(path: Path) -> dict:
    """A PNG's or JPEG's size and problem, in the DICOM header's fields."""
    found = raster.header(path)
    return {"patient_id": "", "study_id": "", "series_id": "", "sop_id": "", "modality": "",
            "orientation": "", "z": float("nan"), **found}  # fmt: skip


def _scan_one(job: tuple) -> list:
    return scan_file(*job)


def list_images(layout: Layout, splits=SPLITS) -> list[tuple[Path, str, str, str]]:
    """(root, split, image ID, path below root, whether to expand frames) of
    every file the task's template matches in each split's folder, sorted;
    files that do not fit the template are not images of the task and are
    left alone."""
    template = layout.task.template
    jobs = []
    for split in splits:
        for below in _split_members(layout.image_dir(split), template):
            fields = template.parse(below)
            if fields is not None:
                relative = (Path(layout.split_dir(split)) / below).as_posix()
                image_id = layout.task.image_id_of(fields)
                jobs.append((layout.root, split, image_id, relative, layout.task.per_unit))
    return jobs


def _split_members(folder: Path, template) -> list[str]:
    """The split's image paths below its folder, sorted: the files the
    template's glob matches, or the keys of an HDF5 file of images."""
    if hdf5.is_hdf5(folder):
        return hdf5.keys(folder) if folder.is_file() else []
    if not folder.is_dir():
        return []
    return [
        path.relative_to(folder).as_posix()
        for path in sorted(folder.glob(template.glob()))
        if path.is_file()
    ]


def path_entries(rows: pd.DataFrame) -> list[Entry]:
    """Each row's Entry (what competition.data.preprocess.load_entry reads)."""
    missing = pd.Series(np.nan, index=rows.index)
    frames = rows["frame"] if "frame" in rows else missing
    low, high = (rows[c] if c in rows else missing for c in ("level_low", "level_high"))
    return [
        Entry(path, None if pd.isna(frame) else int(frame), None if pd.isna(a) else (a, b))
        for path, frame, a, b in zip(rows["path"], frames, low, high, strict=True)
    ]


def add_slice_rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank of each slice in its series by z (0 = lowest); unknown z last."""
    order = frame.sort_values(["series_id", "z", "image_id"], na_position="last")
    ranks = order.groupby("series_id", sort=False).cumcount()
    frame = frame.assign(slice_rank=ranks.reindex(frame.index))
    frame.loc[frame["series_id"].isna(), "slice_rank"] = np.nan
    return frame


def build_index(layout: Layout, workers: int = 0, splits=SPLITS) -> pd.DataFrame:
    jobs = list_images(layout, splits)
    if not jobs:
        pattern = layout.task.template.glob()
        raise MissingTableError(
            f"No image files ({pattern}) under {layout.image_dir('train')} or "
            f"{layout.image_dir('test')}. Point data.root at the competition folder "
            "(make ... DATA_DIR=path)."
        )
    progress = Progress(len(jobs), "index", unit="files")
    rows = []
    n = worker_count(workers)
    with worker_pool(n) as pool:
        for found in pool.map(_scan_one, jobs, chunksize=max(1, min(256, len(jobs) // (8 * n)))):
            rows += found
            progress.advance()
    progress.close()
    frame = add_slice_rank(pd.DataFrame(rows).reindex(columns=COLUMNS))
    frame["slice_rank"] = frame["slice_rank"].astype("Int64")
    frame["frame"] = frame["frame"].astype("Int64")
    frame[["rows", "cols"]] = frame[["rows", "cols"]].astype("Int64")
    print(
        f"Indexed {len(frame)} files at {progress.rate:.0f} files/s with {n} process(es); "
        f"{int((~frame.readable).sum())} unreadable"
    )
    if layout.task.per_unit:
        from competition.data.volumes import check_volumes

        frame = check_volumes(frame, layout.root, workers)
    return frame


def _names_below(folder: Path) -> list[str]:
    """Every file's path below `folder` (os.scandir: no stat per file)."""
    found, stack = [], [folder]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    found.append(os.path.relpath(entry.path, folder))
    return found


def folder_signature(layout: Layout) -> dict:
    """Per split folder: how many files, and a hash of their names. Cheap
    (a directory listing, about a second for the 752,803 RSNA slices) and
    it changes when a file is added, removed or renamed."""
    signature = {}
    for split in SPLITS:
        folder = layout.image_dir(split)
        names = sorted(_names_below(folder)) if folder.is_dir() else []
        digest = hashlib.blake2b("\n".join(names).encode(), digest_size=12).hexdigest()
        signature[split] = {"files": len(names), "names": digest}
    return signature


def signature_path(layout: Layout) -> Path:
    return layout.index_csv.with_suffix(".signature.json")


def folder_changes(layout: Layout) -> list[str]:
    """How the image folders differ from when the index was written (empty
    when they do not, or when the index predates signatures)."""
    path = signature_path(layout)
    if not path.is_file():
        return []
    before, now = json.loads(path.read_text()), folder_signature(layout)
    return [
        f"{split}: {before[split]['files']:,} files then, {now[split]['files']:,} now"
        + ("" if before[split]["files"] != now[split]["files"] else " (other names)")
        for split in now
        if split in before and before[split] != now[split]
    ]


def write_index(layout: Layout, workers: int = 0) -> pd.DataFrame:
    signature = folder_signature(layout)  # before the scan: a file added meanwhile shows next time
    frame = build_index(layout, workers)
    write_csv_atomic(layout.index_csv, frame)
    write_text_atomic(signature_path(layout), json.dumps(signature, indent=2))
    return frame


def read_index(layout: Layout) -> pd.DataFrame:
    if not layout.index_csv.exists():
        raise MissingTableError(
            f"No header index at {layout.index_csv}. "
            "Run `make index` (python -m competition index)."
        )
    text = TEXT_COLUMNS
    frame = pd.read_csv(layout.index_csv, dtype={c: str for c in text} | {"readable": bool})
    frame = frame.reindex(columns=COLUMNS)  # an index written before a column existed
    frame[text] = frame[text].fillna("")
    for column in ("slice_rank", "rows", "cols", "frame"):
        frame[column] = frame[column].astype("Int64")
    return frame


def split_index(layout: Layout, split: str, workers: int = 0) -> pd.DataFrame:
    """The index rows of one split: from index.csv when it was built, else
    scanned now and not written (a Kaggle kernel's test folder: only the
    test files' headers are read)."""
    if layout.index_csv.is_file():
        frame = read_index(layout)
    else:
        frame = build_index(layout, workers, splits=(split,))
    return frame[frame["split"] == split].reset_index(drop=True)
