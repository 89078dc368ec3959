"""Labels of single slices (`series.slice_labels`), for the auxiliary
per-slice head trained beside a unit's heads: a CSV row per labelled slice
(Aneurysm's `train_localizers.csv`: `SeriesInstanceUID, SOPInstanceUID,
coordinates, location`) -> for each unit and each of its T picked slices,
a target per column of the task's sigmoid head.

- A picked slice within `within` slices (in body-axis order) of a labelled
  slice takes that slice's label; a derived column (`Aneurysm Present`, the
  max of the locations) the max of its sources.
- A unit without a row: all zeros when none of its own labels of those
  columns is positive (no slice shows anything), unknown (NaN, masked in
  the loss) when one is (the CSV does not say where).
- The slice is its file's name within the unit (`<unit>_<name>`, as the
  header index names it); in a multi-frame file, the frame the
  coordinates' `'f'` gives.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from competition.data import csvfile
from competition.task import Head, TaskSpec

COORDINATES = "coordinates"


def slice_head(task: TaskSpec) -> tuple[Head, slice]:
    """The sigmoid head whose columns slices are labelled with, and its outputs."""
    for head, part in task.head_slices():
        if head.kind in ("multilabel", "binary"):
            return head, part
    raise csvfile.CsvError(
        f"series.slice_labels needs a multilabel or binary head; task {task.name!r} has "
        f"{[h.kind for h in task.heads]}"
    )


def _frame_of(coordinates: str) -> int | None:
    """The 'f' of a coordinates cell ({'x': .., 'y': .., 'f': ..}), when it has one."""
    try:
        found = ast.literal_eval(coordinates) if coordinates else {}
    except (ValueError, SyntaxError):
        return None
    return int(found["f"]) if isinstance(found, dict) and "f" in found else None


def read_slice_labels(task: TaskSpec, settings, root: Path) -> pd.DataFrame:
    """unit, slice (the index's slice ID), label: the CSV's rows, checked."""
    path = Path(root) / settings.csv
    wanted = [task.id_field, settings.slice_column, settings.label_column]
    has_points = COORDINATES in csvfile.header(path) if path.is_file() else False
    table = csvfile.read_strings(path, wanted + [COORDINATES] * has_points, "slice-label CSV")
    table = table.to_pandas()
    head, _ = slice_head(task)
    unknown = ~table[settings.label_column].isin(head.columns)
    if unknown.any():
        raise csvfile.CsvError(
            f"{path}: {settings.label_column} must name a column of head {head.name!r} "
            f"({', '.join(head.columns)}). Received {table.loc[unknown, settings.label_column].iloc[0]!r} "
            f"on line {int(np.flatnonzero(unknown)[0]) + 2}"
        )
    names = table[task.id_field] + "_" + table[settings.slice_column]
    if has_points:
        frames = [_frame_of(cell) for cell in table[COORDINATES]]
        names = [n if f is None else f"{n}.f{f:04d}" for n, f in zip(names, frames, strict=True)]
    return pd.DataFrame(
        {"unit": table[task.id_field], "slice": names, "label": table[settings.label_column]}
    )


def slice_targets(task: TaskSpec, settings, table: pd.DataFrame, units, unit_ids, unit_labels):
    """(U, T * C) float32: each unit's picked slices' targets, flattened (see
    the module); `units` a UnitSource, `unit_labels` (U, outputs)."""
    head, part = slice_head(task)
    columns = {c: i for i, c in enumerate(head.columns)}
    derived = [(columns[d.name], [columns[c] for c in d.max_of]) for d in task.labels.derived
               if d.name in columns and all(c in columns for c in d.max_of)]  # fmt: skip
    by_unit = {unit: rows for unit, rows in table.groupby("unit", sort=False)}
    where = units.position.get_indexer(list(unit_ids))
    out = np.zeros((len(unit_ids), units.t, len(columns)), np.float32)
    for u, unit in enumerate(unit_ids):
        rows = by_unit.get(unit)
        order = {} if where[u] < 0 else {n: k for k, n in enumerate(units.units.slices[unit])}
        pairs = [] if rows is None else zip(rows["slice"], rows["label"], strict=True)
        found = [(name, label) for name, label in pairs if name in order]
        if not found:  # no labelled slice of this unit is known
            positive = np.nan_to_num(np.asarray(unit_labels[u, part], np.float64)).max() > 0
            out[u] = np.nan if positive else 0.0
            continue
        picked = np.array([order[name] for name in units.picks[where[u]]])
        for name, label in found:
            out[u, np.abs(picked - order[name]) <= settings.within, columns[label]] = 1.0
        for target, sources in derived:
            out[u, :, target] = out[u][:, sources].max(axis=1)
    return out.reshape(len(unit_ids), -1)
