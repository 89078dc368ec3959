"""The labelled points (localise.coordinates): one row per unit and target
with the series, the slice's instance number and x, y in that slice's
pixels (Lumbar 2024's train_label_coordinates.csv). A target is a head
column: the `target` columns joined, lower case, other characters as _
('Spinal Canal Stenosis' + 'L1/L2' -> spinal_canal_stenosis_l1_l2)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from competition.data import csvfile
from competition.errors import KitError
from competition.localise.settings import CoordinatesSpec

COLUMNS = ["unit", "series", "instance", "target", "level", "x", "y"]


def target_name(parts) -> str:
    """The head column a coordinates row names."""
    return re.sub(r"[^a-z0-9]", "_", "_".join(str(p) for p in parts).lower())


def read_points(
    spec: CoordinatesSpec, root: Path, unit_column: str, targets: set[str]
) -> pd.DataFrame:
    """The coordinates CSV as COLUMNS; a row naming no head column, or with
    a coordinate or instance that is not a number, is an error naming it."""
    path = Path(root) / spec.csv
    if not path.is_file():
        raise KitError(
            f"No coordinates at {path} (localise.coordinates.csv): the localiser learns from them."
        )
    needed = [unit_column, spec.series, spec.instance, *spec.target, spec.x, spec.y]
    table = csvfile.read_strings(path, needed, "coordinates CSV").to_pandas()
    frame = pd.DataFrame(
        {
            "unit": table[unit_column],
            "series": table[spec.series],
            "instance": pd.to_numeric(table[spec.instance], errors="coerce"),
            "target": [target_name(p) for p in zip(*(table[c] for c in spec.target), strict=True)],
            "level": [target_name([p]) for p in table[spec.target[-1]]],  # the accuracy's groups
            "x": pd.to_numeric(table[spec.x], errors="coerce"),
            "y": pd.to_numeric(table[spec.y], errors="coerce"),
        }
    )
    for column, source in (("instance", spec.instance), ("x", spec.x), ("y", spec.y)):
        bad = np.flatnonzero(frame[column].isna().to_numpy())
        if len(bad):
            row = int(bad[0])
            raise KitError(
                f"{path}, line {row + 2}: expected a number in column {source!r}. "
                f"Received: {table[source].iloc[row]!r} ({len(bad)} such row(s))"
            )
    unknown = sorted(set(frame["target"]) - targets)
    if unknown:
        raise KitError(
            f"{path}: the columns {spec.target} name target(s) that are no head column of the "
            f"task: {unknown[:3]} ({len(unknown)} in all). "
            f"Expected one of e.g. {sorted(targets)[:3]}."
        )
    frame["instance"] = frame["instance"].astype(int)
    return frame.drop_duplicates(["unit", "series", "target"], keep="first").reset_index(drop=True)
