"""Reading a competition's CSV files (labels, test list, sample submission):
every column as text, fast (pyarrow's multithreaded reader), with errors
that name the file, the columns and the lines at fault.

Line numbers count the header as line 1, so row i of the table is line i + 2.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from competition.errors import KitError

SHOWN = 5  # offending rows named in a message


class CsvError(KitError, ValueError):
    """A competition CSV file that is missing, unreadable, or not of the expected shape."""


def header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except UnicodeDecodeError as exc:
        raise CsvError(f"{path}: not a text CSV file ({exc})") from None


def read_strings(path: str | Path, columns: Sequence[str], what: str) -> pa.Table:
    """The named columns of a CSV, every value a (non-null) string; the
    error for a missing file or missing columns names `what` the file is."""
    path = Path(path)
    if not path.is_file():
        raise CsvError(f"No {what} at {path}")
    names = header(path)
    missing = [c for c in columns if c not in names]
    if missing or not names:
        raise CsvError(
            f"{path}: expected a CSV file with columns {','.join(columns)}. Missing: {missing}; "
            f"received: {names or 'no header line'}"
        )
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),
        include_columns=list(dict.fromkeys(columns)),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        return pacsv.read_csv(path, convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise CsvError(
            f"{path}: it could not be read as a CSV file with columns {','.join(columns)} "
            f"({type(exc).__name__}: {str(exc).strip()})"
        ) from None


def column(table: pa.Table, name: str) -> pa.Array:
    return table[name].combine_chunks()


def lines(rows: Iterable[int], *columns: np.ndarray) -> str:
    """'line 3 (img_7='2'), line 9 (...)' for the first few rows, and how many more."""
    rows = list(rows)
    shown = []
    for row in rows[:SHOWN]:
        values = "=".join(repr(str(c[row])) if i else str(c[row]) for i, c in enumerate(columns))
        shown.append(f"line {row + 2}" + (f" ({values})" if columns else ""))
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    return ", ".join(shown) + more


NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def numbers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, rows that are not numbers); non-numbers become NaN."""
    ok = pc.match_substring_regex(values, NUMBER).to_numpy(zero_copy_only=False)
    if ok.all():
        return pc.cast(values, pa.float64()).to_numpy(), np.zeros(0, np.int64)
    parsed = np.full(len(values), np.nan)
    good = np.flatnonzero(ok)
    parsed[good] = pc.cast(pc.take(values, pa.array(good)), pa.float64()).to_numpy()
    return parsed, np.flatnonzero(~ok)


def as_strings(values: pa.Array) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
