"""Samples above the image: a series, study or patient (task.unit) as one
sample, a stack of T of its slices along the body axis.

- `unit_of`: each image's unit, from its folder level, a header field, or
  a CSV that maps one of the image's fields to its unit.
- `unit_slices`: each unit's readable slices in body-axis order (the
  index's z: ImagePositionPatient on the slice normal), one per position in
  a series, and the unreadable and repeated ones it lost.
- `unit_index`: one row per unit in the header index's columns, what the
  folds, the test set and the data report read: readable when one of its
  slices is.
- `even_picks`: T positions evenly spaced over a unit's n slices (a series
  shorter than T repeats slices, a longer one is subsampled);
  `native_picks`: T consecutive ones from its middle (a shorter one
  edge-padded); `picks_for` chooses by series.spacing.
- `UnitSource`: a unit ID -> (T, H, W, C) uint8 from a slice source (the
  files or the cache, 2.5D stacks included), a whole batch in one gather
  from the cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from competition.errors import ImageReadError, KitError
from competition.task import DICOM_GROUP_KEYS, TaskSpec

log = logging.getLogger("competition")

NO_SLICE = "no readable slice"


def unit_of(task: TaskSpec, index: pd.DataFrame, root: Path | None = None) -> np.ndarray:
    """The unit of each index row: the template's unit folder in its path
    (task.unit.by folder), its header field (dicom), or what the CSV below
    `root` maps its key to (csv); "" for none."""
    if task.unit.by == "dicom":
        return index[DICOM_GROUP_KEYS[task.unit.key]].fillna("").to_numpy(dtype=object)
    if task.unit.by == "csv":
        return _units_from_csv(task, index, root)
    return path_field(task, index, task.template.id_field).to_numpy(dtype=object)


def path_field(task: TaskSpec, index: pd.DataFrame, name: str) -> pd.Series:
    """Each row's value of the path template's field `name` ("" when absent)."""
    template, found = task.template, []
    for path in index["path"]:
        below = PurePosixPath(path).parts[1:]  # the split folder is the template's {split_dir}
        found.append((template.parse("/".join(below)) or {}).get(name, ""))
    return pd.Series(found, index=index.index, dtype=object)


def _units_from_csv(task: TaskSpec, index: pd.DataFrame, root: Path | None) -> np.ndarray:
    """task.unit.csv's unit for each row's key (a path field, else the
    header field of that DICOM keyword)."""
    from competition.data import csvfile

    key, unit_column = task.unit.key, task.id_field
    if root is None:
        raise KitError("units found through a CSV need the data root to read it from")
    path = Path(root) / task.unit.csv
    table = csvfile.read_strings(path, [key, unit_column], "unit CSV (task.unit.csv)").to_pandas()
    table = table.drop_duplicates()
    split = table[table.duplicated(key, keep=False)]
    if not split.empty:
        raise csvfile.CsvError(
            f"{path}: expected one {unit_column} per {key}. Received "
            f"{split[key].nunique()} {key} value(s) with several, e.g. "
            f"{split[key].iloc[0]!r} -> {sorted(split[split[key] == split[key].iloc[0]][unit_column])}"
        )
    if key in task.template.fields:
        values = path_field(task, index, key)
    else:
        values = index[DICOM_GROUP_KEYS[key]].fillna("")
    units = values.map(dict(zip(table[key], table[unit_column], strict=True))).fillna("")
    unmatched = index.loc[(units == "") & (values != ""), "image_id"]
    if len(unmatched):
        log.warning(
            "%d image(s) have a %s that %s does not list: they belong to no unit (e.g. %s)",
            len(unmatched), key, path.name, ", ".join(unmatched[:3]),
        )  # fmt: skip
    return units.to_numpy(dtype=object)


@dataclass(frozen=True)
class UnitSlices:
    """A split's units: each one's readable slices in body-axis order."""

    slices: dict[str, np.ndarray]  # unit ID -> image IDs, ordered along the body axis
    lost: dict[str, list[str]]  # unit ID -> its unreadable slices
    repeats: dict[str, list[str]]  # unit ID -> slices at a position another of its slices has


def unit_slices(
    task: TaskSpec, index: pd.DataFrame, split: str, root: Path | None = None
) -> UnitSlices:
    """Each unit of the split with its readable slices ordered by z (a slice
    without a position after those with one, then by ID)."""
    rows = index[index["split"] == split].assign(unit=lambda f: unit_of(task, f, root))
    return slices_by_unit(rows[rows["unit"] != ""])


def slices_by_unit(rows: pd.DataFrame) -> UnitSlices:
    """Index rows with their `unit` -> each unit's slices (see unit_slices)."""
    ordered = rows.sort_values(["unit", "z", "image_id"], na_position="last")
    readable = ordered[ordered["readable"]]
    # A second slice at the same position (a repeated acquisition, a copied
    # file) would count twice along the axis: the first by ID is kept.
    repeated = readable["z"].notna() & readable.duplicated(["unit", "series_id", "z"])
    slices = {
        unit: group["image_id"].to_numpy(dtype=str)
        for unit, group in readable[~repeated].groupby("unit")
    }
    lost = {
        unit: group["image_id"].tolist()
        for unit, group in ordered[~ordered["readable"]].groupby("unit")
    }
    repeats = {
        unit: group["image_id"].tolist() for unit, group in readable[repeated].groupby("unit")
    }
    return UnitSlices(slices, lost, repeats)


def unit_index(task: TaskSpec, index: pd.DataFrame, root: Path | None = None) -> pd.DataFrame:
    """One row per unit of each split, in the header index's columns: its
    patient, study and series (the first slice's), readable when a slice
    is, and why not."""
    rows = index.assign(unit=unit_of(task, index, root))
    rows = rows[rows["unit"] != ""]
    found = []
    for (split, unit), group in rows.groupby(["split", "unit"], sort=True):
        first = group.iloc[0]
        readable = bool(group["readable"].any())
        found.append(
            {
                "image_id": unit,
                "split": split,
                "path": str(PurePosixPath(first["path"]).parent),
                "patient_id": first["patient_id"],
                "study_id": first["study_id"],
                "series_id": first["series_id"],
                "slices": int(group["readable"].sum()),
                "readable": readable,
                "reason": "" if readable else f"{NO_SLICE} ({len(group)} unreadable)",
            }
        )
    return pd.DataFrame(found)


def sample_index(task: TaskSpec, index: pd.DataFrame, root: Path | None = None) -> pd.DataFrame:
    """The index of what a sample is: the images, or the units."""
    return unit_index(task, index, root) if task.per_unit else index


def even_picks(n: int, t: int) -> np.ndarray:
    """T positions evenly spaced over n slices, first to last."""
    if n == 1:
        return np.zeros(t, dtype=np.int64)
    return np.rint(np.linspace(0, n - 1, t)).astype(np.int64)


def _warn_left_out(units: UnitSlices) -> None:
    """One line for the units that lost unreadable slices, one for repeats
    (the data report lists every slice with its reason)."""
    for what, found in (("unreadable slice(s)", units.lost),
                        ("slice(s) at the position of another", units.repeats)):  # fmt: skip
        hit = {unit: ids for unit, ids in found.items() if unit in units.slices}
        if hit:
            names = ", ".join(list(hit)[:3]) + (", ..." if len(hit) > 3 else "")
            log.warning("Left out of %d unit(s): %d %s (make data-report lists them): %s",
                        len(hit), sum(map(len, hit.values())), what, names)  # fmt: skip


def native_picks(n: int, t: int) -> np.ndarray:
    """T consecutive positions from the middle of n slices, the slices' own
    spacing kept (a unit shorter than T: its first and last slices repeated
    at the ends)."""
    start = (n - t) // 2
    return np.clip(np.arange(start, start + t), 0, n - 1).astype(np.int64)


def picks_for(spacing: str, n: int, t: int) -> np.ndarray:
    """series.spacing's T positions of n slices (resample: even_picks; native: native_picks)."""
    return native_picks(n, t) if spacing == "native" else even_picks(n, t)


class UnitSource:
    """Units as (T, H, W, C) stacks of their slices, read from `inner` (a
    slice source: files, cache, or their 2.5D stacks)."""

    def __init__(self, inner, units: UnitSlices, t: int, spacing: str = "resample"):
        self.inner, self.units, self.t = inner, units, t
        self.layout, self.split = inner.layout, inner.split
        self.shape = (t, *inner.shape)
        self.ids = np.asarray(sorted(units.slices), dtype=str)
        self.position = pd.Index(self.ids)
        self.picks = [
            units.slices[unit][picks_for(spacing, len(units.slices[unit]), t)] for unit in self.ids
        ]
        inner_locate = getattr(inner, "locate", None)
        self._inner_rows = (
            None
            if inner_locate is None or not len(self.ids)
            else inner_locate(np.concatenate(self.picks)).reshape(len(self.ids), t)
        )
        _warn_left_out(units)

    @property
    def cheap_take(self) -> bool:
        return getattr(self.inner, "cheap_take", False)

    def load(self, unit_id: str) -> np.ndarray:
        """One unit's stack, slice by slice; a slice that fails to read is
        replaced by its nearest readable neighbour in the unit, and a unit
        with none raises ImageReadError (left out, or given the fallback)."""
        where = self.position.get_indexer([unit_id])[0]
        if where < 0:
            raise ImageReadError(f"{self.split} unit {unit_id}", NO_SLICE)
        picks, stack, done = self.picks[where], [], {}
        for image_id in picks:
            if image_id not in done:
                done[image_id] = self._slice_or_neighbour(unit_id, image_id)
            stack.append(done[image_id])
        return np.stack(stack)

    def _slice_or_neighbour(self, unit_id: str, image_id: str) -> np.ndarray:
        slices = self.units.slices[unit_id]
        start = int(np.flatnonzero(slices == image_id)[0])
        order = sorted(range(len(slices)), key=lambda i: abs(i - start))
        for i in order:
            try:
                return self.inner.load(str(slices[i]))
            except ImageReadError as exc:
                log.warning("Unit %s: slice %s unreadable (%s)", unit_id, slices[i], exc.cause)
        raise ImageReadError(f"{self.split} unit {unit_id}", NO_SLICE)

    def locate(self, unit_ids) -> np.ndarray | None:
        """Position of each unit; -1 where one of its picked slices is not
        a plain read of the inner source (None: it reads one at a time)."""
        if self._inner_rows is None:
            return None
        where = self.position.get_indexer(unit_ids)
        held = np.zeros(len(where), dtype=bool)
        found = where >= 0
        held[found] = (self._inner_rows[where[found]] >= 0).all(axis=1)
        return np.where(held, where, -1)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The stacks of the given units: every slice of the batch in one read."""
        slice_rows = self._inner_rows[rows]  # (B, T)
        slices = self.inner.take(slice_rows.reshape(-1))
        return slices.reshape(*slice_rows.shape, *slices.shape[1:])
