"""Samples above the image: a series, study or patient (task.unit) as one
sample, a stack of T of its slices along the body axis.

- `unit_of`: each image's unit, from its folder level or a header field.
- `unit_slices`: each unit's readable slices in body-axis order (the
  index's z: ImagePositionPatient on the slice normal), one per position in
  a series, and the unreadable and repeated ones it lost.
- `unit_index`: one row per unit in the header index's columns, what the
  folds, the test set and the data report read: readable when one of its
  slices is.
- `even_picks`: T positions evenly spaced over a unit's n slices (a series
  shorter than T repeats slices, a longer one is subsampled).
- `UnitSource`: a unit ID -> (T, H, W, C) uint8 from a slice source (the
  files or the cache, 2.5D stacks included), a whole batch in one gather
  from the cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from competition.errors import ImageReadError
from competition.task import DICOM_GROUP_KEYS, TaskSpec

log = logging.getLogger("competition")

NO_SLICE = "no readable slice"


def unit_of(task: TaskSpec, index: pd.DataFrame) -> np.ndarray:
    """The unit of each index row: the template's unit folder in its path
    (task.unit.by folder), or its header field (dicom)."""
    if task.unit.by == "dicom":
        return index[DICOM_GROUP_KEYS[task.unit.key]].fillna("").to_numpy(dtype=object)
    template = task.template
    units = []
    for path in index["path"]:
        below = PurePosixPath(path).parts[1:]  # the split folder is the template's {split_dir}
        fields = template.parse("/".join(below)) or {}
        units.append(fields.get(template.id_field, ""))
    return np.asarray(units, dtype=object)


@dataclass(frozen=True)
class UnitSlices:
    """A split's units: each one's readable slices in body-axis order."""

    slices: dict[str, np.ndarray]  # unit ID -> image IDs, ordered along the body axis
    lost: dict[str, list[str]]  # unit ID -> its unreadable slices
    repeats: dict[str, list[str]]  # unit ID -> slices at a position another of its slices has


def unit_slices(task: TaskSpec, index: pd.DataFrame, split: str) -> UnitSlices:
    """Each unit of the split with its readable slices ordered by z (a slice
    without a position after those with one, then by ID)."""
    rows = index[index["split"] == split].assign(unit=lambda f: unit_of(task, f))
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


def unit_index(task: TaskSpec, index: pd.DataFrame) -> pd.DataFrame:
    """One row per unit of each split, in the header index's columns: its
    patient, study and series (the first slice's), readable when a slice
    is, and why not."""
    rows = index.assign(unit=unit_of(task, index))
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


def sample_index(task: TaskSpec, index: pd.DataFrame) -> pd.DataFrame:
    """The index of what a sample is: the images, or the units."""
    return unit_index(task, index) if task.per_unit else index


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
            log.warning("%d unit(s) left out %d %s (make data-report lists them): %s",
                        len(hit), sum(map(len, hit.values())), what, names)  # fmt: skip


class UnitSource:
    """Units as (T, H, W, C) stacks of their slices, read from `inner` (a
    slice source: files, cache, or their 2.5D stacks)."""

    def __init__(self, inner, units: UnitSlices, t: int):
        self.inner, self.units, self.t = inner, units, t
        self.layout, self.split = inner.layout, inner.split
        self.shape = (t, *inner.shape)
        self.ids = np.asarray(sorted(units.slices), dtype=str)
        self.position = pd.Index(self.ids)
        self.picks = [units.slices[unit][even_picks(len(units.slices[unit]), t)] for unit in self.ids]
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
