"""The label table: subtype names and order, the competition's long CSV
(`ID_<image>_<subtype>,Label`) to a wide table (one row per image) and back."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import KitError

# The competition's order; `any` is the max of the other five.
SUBTYPES = (
    "epidural",
    "intraparenchymal",
    "intraventricular",
    "subarachnoid",
    "subdural",
    "any",
)
LESION_SUBTYPES = SUBTYPES[:-1]
# Metric weights, in SUBTYPES order: `any` counts twice.
WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 2.0)

IMAGE_ID_PATTERN = r"ID_[0-9A-Za-z]+"
_LONG_ID = re.compile(rf"^(?P<image>{IMAGE_ID_PATTERN})_(?P<subtype>[a-z]+)$")
_SHOWN = 5  # offending rows named in an error message


class LabelError(KitError, ValueError):
    """A label file that does not fit the competition's format."""


def _rows(frame: pd.DataFrame, mask: pd.Series) -> str:
    """'lines 3, 9 (ID_x_any='2')' for the offending rows; CSV line = index + 2."""
    bad = frame[mask]
    shown = ", ".join(
        f"line {i + 2} ({row.ID}={row.Label!r})" for i, row in bad.head(_SHOWN).iterrows()
    )
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    return shown + more


def read_long_csv(path: str | Path) -> pd.DataFrame:
    """Read a long label CSV as strings, checking its columns."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise LabelError(f"No label file at {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LabelError(
            f"{path}: expected a CSV file with columns ID,Label. It could not be read as CSV "
            f"({type(exc).__name__}: {str(exc).strip()})"
        ) from None
    missing = {"ID", "Label"} - set(frame.columns)
    if missing:
        raise LabelError(
            f"{path}: expected columns ID,Label. Missing: {sorted(missing)}; "
            f"received: {list(frame.columns)}"
        )
    return frame[["ID", "Label"]]


def split_ids(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Add `image_id` and `subtype` columns parsed from `ID`; malformed IDs
    and unknown subtypes are errors naming the rows."""
    parts = frame["ID"].str.extract(_LONG_ID)
    malformed = parts["image"].isna()
    if malformed.any():
        raise LabelError(
            f"{source}: expected IDs like ID_<hex>_<subtype>. Malformed: {_rows(frame, malformed)}"
        )
    unknown = ~parts["subtype"].isin(SUBTYPES)
    if unknown.any():
        raise LabelError(
            f"{source}: unknown subtype (expected one of {', '.join(SUBTYPES)}): "
            f"{_rows(frame, unknown)}"
        )
    return frame.assign(image_id=parts["image"], subtype=parts["subtype"])


def _binary_labels(frame: pd.DataFrame, source: str) -> pd.Series:
    values = pd.to_numeric(frame["Label"], errors="coerce")
    bad = values.isna() | ~values.isin([0, 1])
    if bad.any():
        raise LabelError(f"{source}: labels must be 0 or 1. Received: {_rows(frame, bad)}")
    return values.astype(np.int8)


def long_to_wide(frame: pd.DataFrame, source: str = "labels") -> pd.DataFrame:
    """Long `ID,Label` rows -> one row per image (index `image_id`), columns
    SUBTYPES in order, int8. Exact duplicate rows are dropped."""
    frame = frame.drop_duplicates(ignore_index=False)
    parsed = split_ids(frame, source)
    parsed["value"] = _binary_labels(parsed, source)
    conflicting = parsed.duplicated("ID", keep=False)
    if conflicting.any():
        raise LabelError(f"{source}: the same ID has different labels: {_rows(frame, conflicting)}")
    wide = parsed.pivot(index="image_id", columns="subtype", values="value")
    wide = wide.reindex(columns=list(SUBTYPES))
    incomplete = wide.isna().any(axis=1)
    if incomplete.any():
        examples = {
            image: [s for s in SUBTYPES if pd.isna(wide.at[image, s])]
            for image in wide.index[incomplete][:_SHOWN]
        }
        raise LabelError(
            f"{source}: every image needs all six subtypes; {int(incomplete.sum())} images "
            f"miss some. Missing: {examples}"
        )
    wide.columns.name = None
    return wide.astype(np.int8)


def read_labels(path: str | Path) -> pd.DataFrame:
    """The competition's train CSV as a wide table (see long_to_wide)."""
    return long_to_wide(read_long_csv(path), source=str(path))


def wide_to_long(wide: pd.DataFrame) -> pd.DataFrame:
    """One row per image -> `ID,Label` rows, six per image in SUBTYPES order."""
    values = wide[list(SUBTYPES)]
    ids = np.char.add(
        np.repeat(values.index.to_numpy(dtype=str), len(SUBTYPES)),
        np.tile(np.array([f"_{s}" for s in SUBTYPES]), len(values)),
    )
    return pd.DataFrame({"ID": ids, "Label": values.to_numpy().reshape(-1)})
