"""The header index: one pass over every DICOM header (no pixel decoding),
in parallel, into `index.csv`: IDs, patient/study/series, z, the slice's rank
in its series, size, and whether the pixels can be read (and why not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.dicom import DicomReadError, read_header
from competition.errors import KitError
from competition.fileio import write_csv_atomic
from competition.layout import SPLITS, Layout, UnsafeIdError, check_image_id
from competition.progress import Progress
from competition.workers import worker_count, worker_pool

COLUMNS = [
    "image_id",
    "split",
    "patient_id",
    "study_id",
    "series_id",
    "z",
    "slice_rank",
    "rows",
    "cols",
    "readable",
    "reason",
]


class MissingTableError(KitError, FileNotFoundError):
    """A derived table (index, folds) that has not been built yet."""


def scan_file(split: str, path: Path) -> dict:
    """One index row; a file that cannot be used is kept with its reason."""
    row = {"image_id": path.stem, "split": split, "readable": False, "reason": ""}
    try:
        check_image_id(path.stem)
        header = read_header(path)
    except (UnsafeIdError, DicomReadError) as exc:
        row["reason"] = getattr(exc, "cause", str(exc))
        return row
    problem = header.pop("pixel_problem")
    header.pop("sop_id")
    row.update(header, readable=problem is None, reason=problem or "")
    return row


def _scan_one(job: tuple[str, Path]) -> dict:
    return scan_file(*job)


def list_images(layout: Layout) -> list[tuple[str, Path]]:
    jobs = []
    for split in SPLITS:
        folder = layout.image_dir(split)
        if folder.is_dir():
            jobs += [(split, p) for p in sorted(folder.glob("*.dcm"))]
    return jobs


def add_slice_rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank of each slice in its series by z (0 = lowest); unknown z last."""
    order = frame.sort_values(["series_id", "z", "image_id"], na_position="last")
    ranks = order.groupby("series_id", sort=False).cumcount()
    frame = frame.assign(slice_rank=ranks.reindex(frame.index))
    frame.loc[frame["series_id"].isna(), "slice_rank"] = np.nan
    return frame


def build_index(layout: Layout, workers: int = 0) -> pd.DataFrame:
    jobs = list_images(layout)
    if not jobs:
        raise MissingTableError(
            f"No .dcm files under {layout.image_dir('train')} or {layout.image_dir('test')}. "
            "Point data.root at the competition folder (make ... DATA_DIR=path)."
        )
    progress = Progress(len(jobs), "index", unit="files")
    rows = []
    n = worker_count(workers)
    with worker_pool(n) as pool:
        for row in pool.map(_scan_one, jobs, chunksize=max(1, min(256, len(jobs) // (8 * n)))):
            rows.append(row)
            progress.advance()
    progress.close()
    frame = add_slice_rank(pd.DataFrame(rows).reindex(columns=COLUMNS))
    frame["slice_rank"] = frame["slice_rank"].astype("Int64")
    frame[["rows", "cols"]] = frame[["rows", "cols"]].astype("Int64")
    print(
        f"Indexed {len(frame)} files at {progress.rate:.0f} files/s with {n} process(es); "
        f"{int((~frame.readable).sum())} unreadable"
    )
    return frame


def write_index(layout: Layout, workers: int = 0) -> pd.DataFrame:
    frame = build_index(layout, workers)
    write_csv_atomic(layout.index_csv, frame)
    return frame


def read_index(layout: Layout) -> pd.DataFrame:
    if not layout.index_csv.exists():
        raise MissingTableError(
            f"No header index at {layout.index_csv}. "
            "Run `make index` (python -m competition index)."
        )
    text = ["image_id", "split", "patient_id", "study_id", "series_id", "reason"]
    frame = pd.read_csv(layout.index_csv, dtype={c: str for c in text} | {"readable": bool})
    frame[text] = frame[text].fillna("")
    for column in ("slice_rank", "rows", "cols"):
        frame[column] = frame[column].astype("Int64")
    return frame
