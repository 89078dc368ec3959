"""A series- or study-level task's slices checked and read as volumes, once
the header index has them (and again for each series a Kaggle kernel is
handed):

- one geometry per series: a slice whose orientation (ImageOrientationPatient)
  or size (rows x columns) differs from most of its series' slices (a
  localizer or scout stored with the series, a reformat mixed in) is left
  out of it, with a reason that names both, never stacked with the rest;
- intensity levels per series where there are no Hounsfield units (an MR
  series, or a modality other than CT): the 0.5th and 99.5th percentiles of the
  series' values, from up to LEVEL_SLICES slices evenly spaced along it.
  Each of its slices is then mapped from that range to 0..255
  (competition.data.preprocess), so that the series keeps its contrast from
  slice to slice and scanners of different scales meet on one range; CT
  series in the same competition keep their HU windows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from competition.errors import ImageReadError
from competition.workers import worker_count, worker_pool

LEVEL_SLICES = 8
LEVEL_PERCENTILES = (0.5, 99.5)
HU_MODALITIES = ("CT", "")  # "": no Modality tag: read as HU, as before the check


def series_key(rows: pd.DataFrame) -> pd.Series:
    """The series of each slice: its SeriesInstanceUID, or its folder without one."""
    folders = rows["path"].str.rsplit("/", n=1).str[0]
    return rows["series_id"].where(rows["series_id"] != "", folders)


def _geometry(rows: pd.DataFrame) -> pd.DataFrame:
    size = rows["rows"].astype(str) + "x" + rows["cols"].astype(str)
    return pd.DataFrame({"orientation": rows["orientation"].fillna(""), "size": size})


def leave_out_odd_slices(frame: pd.DataFrame) -> pd.DataFrame:
    """Readable slices whose orientation or size is not their series' most
    common one marked unreadable, with the reason (see the module)."""
    frame = frame.copy()
    readable = frame[frame["readable"]]
    geometry = _geometry(readable)
    for _, members in geometry.groupby(series_key(readable), sort=False):
        for what in ("orientation", "size"):
            counts = members[what].value_counts()
            if len(counts) < 2:
                continue
            usual = counts.index[0]
            odd = members.index[members[what] != usual]
            frame.loc[odd, "readable"] = False
            frame.loc[odd, "reason"] = [
                f"{what} {members.at[i, what] or '(none)'} differs from the rest of its "
                f"series ({usual or '(none)'}): left out of the series"
                for i in odd
            ]
            members = members.drop(odd)
    return frame


def _levels_of(job: tuple) -> tuple[float, float]:
    """(low, high) of the values of a few slices (NaN when none could be read)."""
    from competition.data.dicom import read_pixels

    root, entries = job
    values = []
    for path, frame in entries:
        try:
            pixels, rescale = read_pixels(root / path, frame)
        except ImageReadError:
            continue  # reported when the slice itself is read
        values.append(rescale.to_hu(pixels)[::2, ::2].ravel())
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(np.concatenate(values), LEVEL_PERCENTILES)
    return float(low), float(max(high, low + 1.0))


def add_series_levels(frame: pd.DataFrame, root, workers: int = 0) -> pd.DataFrame:
    """level_low and level_high for every slice of a series without HU."""
    from competition.data.units import even_picks

    frame = frame.assign(level_low=np.nan, level_high=np.nan)
    wanted = frame[frame["readable"] & ~frame["modality"].fillna("").isin(HU_MODALITIES)]
    if wanted.empty:
        return frame
    groups = [
        members.sort_values(["z", "image_id"], na_position="last")
        for _, members in wanted.groupby(series_key(wanted), sort=False)
    ]
    jobs = []
    for members in groups:
        picked = members.iloc[np.unique(even_picks(len(members), LEVEL_SLICES))]
        frames = [None if pd.isna(f) else int(f) for f in picked["frame"]]
        jobs.append((root, list(zip(picked["path"], frames, strict=True))))
    n = min(worker_count(workers), len(jobs))
    if n <= 1:
        found = [_levels_of(job) for job in jobs]
    else:
        with worker_pool(n) as pool:
            found = list(pool.map(_levels_of, jobs))
    for members, (low, high) in zip(groups, found, strict=True):
        frame.loc[members.index, ["level_low", "level_high"]] = low, high
    return frame


def check_volumes(frame: pd.DataFrame, root, workers: int = 0) -> pd.DataFrame:
    """Both steps, in order (a slice left out does not count in the levels)."""
    checked = add_series_levels(leave_out_odd_slices(frame), root, workers)
    odd = int(checked["reason"].str.contains("left out of the series", regex=False).sum())
    levelled = checked.loc[checked["level_low"].notna(), "image_id"].size
    if odd or levelled:
        print(f"Volumes: {odd} slice(s) left out of their series (orientation or size); "
              f"{levelled} slice(s) of series without HU levelled per series")  # fmt: skip
    return checked
