"""A study's series, by kind, and a series as a volume.

- `route_series`: each series of a split with its unit and kind: the kind
  from the series-description CSV (localise.series.csv / test_csv) or,
  without one, a header attribute (localise.series.header: SeriesDescription
  or Modality); a series of no configured kind is left out with a report
  line, a unit without a kind is listed (its heads get the fallback).
- `Volume`: one series' readable slices in body-axis order (the header
  index's z), each slice's instance number (the file name's field), the
  pixel spacing, and a slice as float32 0..255 (the series' intensity
  levels for MR, the first window for CT).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from competition.data import csvfile
from competition.data.units import path_field, unit_of
from competition.errors import ConfigError, KitError
from competition.localise.settings import SeriesRouting
from competition.task import TaskSpec

log = logging.getLogger("competition")


def normal_text(text: str) -> str:
    """Lower case, other characters as one space ('Sagittal T2/STIR' ~ 'sagittal t2 stir')."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", str(text).lower()).split())


def kind_of_description(routing: SeriesRouting, description: str) -> str | None:
    wanted = normal_text(description)
    for kind in routing.kinds:
        if wanted in {normal_text(m) for m in kind.match}:
            return kind.name
    return None


def _descriptions(routing: SeriesRouting, root: Path, split: str) -> dict[str, str] | None:
    """series ID -> description from the split's CSV (None: no CSV configured)."""
    name = routing.csv if split == "train" else routing.test_csv
    if not name:
        return None
    path = Path(root) / name
    if not path.is_file():
        raise KitError(
            f"No series descriptions at {path} "
            f"(localise.series.{'csv' if split == 'train' else 'test_csv'}). "
            f"Expected a CSV with columns {routing.key}, {routing.column}; set that key to null "
            "to read each series' localise.series.header attribute from its DICOM header instead."
        )
    table = csvfile.read_strings(path, [routing.key, routing.column], "series CSV").to_pandas()
    return dict(zip(table[routing.key], table[routing.column], strict=True))


def _header_description(path: Path, attribute: str) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).get(attribute, ""))


def route_series(
    task: TaskSpec, routing: SeriesRouting, index: pd.DataFrame, root: Path, split: str
) -> tuple[pd.DataFrame, list[str]]:
    """One row per series of the split (unit, series, kind, description)
    and report lines for the series of no kind."""
    rows = index[(index["split"] == split) & index["readable"]].copy()
    if routing.key not in task.template.fields:
        raise ConfigError(
            f"Config key 'localise.series.key' must be a field of task.images.path "
            f"({task.images.path}). Received: {routing.key!r}"
        )
    rows["unit"] = unit_of(task, rows, root)
    rows["series"] = path_field(task, rows, routing.key)
    first = rows.groupby("series", sort=True).first()
    known = _descriptions(routing, root, split)
    found, report = [], []
    for series, row in first.iterrows():
        if known is None:
            description = _header_description(Path(root) / row["path"], routing.header)
        else:
            description = known.get(series)
        kind = None if description is None else kind_of_description(routing, description)
        if kind is None:
            report.append(
                f"series {series} of unit {row['unit']}: description {description!r} "
                f"is none of localise.series.kinds; left out"
            )
            continue
        found.append(
            {"unit": row["unit"], "series": series, "kind": kind, "description": description}
        )
    return pd.DataFrame(found, columns=["unit", "series", "kind", "description"]), report


def missing_kinds(series: pd.DataFrame, units: list[str], kinds: list[str]) -> dict[str, list[str]]:
    """Unit -> the kinds it has no series of."""
    have = series.groupby("unit")["kind"].agg(set).to_dict() if len(series) else {}
    return {
        u: [k for k in kinds if k not in have.get(u, set())]
        for u in units
        if any(k not in have.get(u, set()) for k in kinds)
    }


@dataclass
class Volume:
    """One series: readable slices in body-axis order (see the module)."""

    series: str
    paths: list[Path]
    instances: list[int]
    spacing: tuple[float, float]  # (row, column) mm per pixel
    levels: tuple[float, float]  # value -> 0 and -> 255
    shape: tuple[int, int]  # (rows, columns) of its slices

    def __len__(self) -> int:
        return len(self.paths)

    def slice(self, i: int) -> np.ndarray:
        """Slice i (clamped to the series) as float32 0..255."""
        return _levelled(str(self.paths[min(max(i, 0), len(self) - 1)]), self.levels)

    def position_of(self, instance: int) -> int | None:
        try:
            return self.instances.index(int(instance))
        except ValueError:
            return None


@lru_cache(maxsize=256)  # full-size float32 slices: 1 MiB each at 512 px
def _levelled(path: str, levels: tuple[float, float]) -> np.ndarray:
    from competition.data.dicom import read_pixels

    pixels, rescale = read_pixels(path)
    low, high = levels
    values = (rescale.to_hu(pixels) - low) * (255.0 / max(high - low, 1e-6))
    return np.clip(values, 0, 255).astype(np.float32)


def _spacing(path: Path) -> tuple[float, float]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    spacing = ds.get("PixelSpacing")
    if not spacing or len(spacing) != 2 or min(float(v) for v in spacing) <= 0:
        raise KitError(
            f"{path}: the crops are sized in mm and need PixelSpacing (two positive numbers). "
            f"Received: {spacing!r}"
        )
    return float(spacing[0]), float(spacing[1])


def volumes(
    task: TaskSpec,
    routing: SeriesRouting,
    index: pd.DataFrame,
    root: Path,
    windows,
    instance_field: str,
) -> dict[str, Volume]:
    """series ID -> its Volume, for every readable series of the index."""
    rows = index[index["readable"]].copy()
    rows["series"] = path_field(task, rows, routing.key)
    rows["instance"] = pd.to_numeric(path_field(task, rows, instance_field), errors="coerce")
    found = {}
    for series, group in rows.sort_values(["series", "z", "instance"]).groupby("series"):
        first = group.iloc[0]
        if pd.notna(first.get("level_low")) and pd.notna(first.get("level_high")):
            levels = (float(first["level_low"]), float(first["level_high"]))
        else:
            centre, width = windows[0]
            levels = (centre - width / 2, centre + width / 2)
        paths = [Path(root) / p for p in group["path"]]
        instances = group["instance"].fillna(-1).astype(int).tolist()
        shape = (int(first["rows"]), int(first["cols"]))
        found[series] = Volume(series, paths, instances, _spacing(paths[0]), levels, shape)
    return found
