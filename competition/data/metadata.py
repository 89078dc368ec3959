"""Tabular metadata beside the image (SIIM-ISIC 2020's winners fed age, sex
and site into the CNN): `model.metadata_numeric` and
`model.metadata_categorical` columns of the label CSV (training) or the
test CSV (test), one row per image, encoded for the model's metadata
branch (competition.training.layers.MetadataBranch) as one float32 vector:

    [numeric values (missing: 0) | missing flags (1: missing) | category codes]

A category's code is its position in the column's vocabulary (the sorted
values of the label CSV, kept in the model with the branch so that the
test rows are coded alike where no label CSV is, in the Kaggle kernel); 0
is missing or a value the vocabulary lacks. The numeric columns are
normalised in the model with the fold's training rows' mean and std."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import KitError


@dataclass(frozen=True)
class MetadataColumns:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.numeric or self.categorical)

    @property
    def width(self) -> int:
        return 2 * len(self.numeric) + len(self.categorical)


def read_table(path, id_field: str, columns: MetadataColumns, what: str) -> pd.DataFrame:
    """The CSV's metadata columns indexed by ID (an absent column names the
    file); read once per process while the file is unchanged (a fold builds
    three generators from the label CSV)."""
    path = Path(path)
    return _read_table(path, path.stat().st_mtime_ns, id_field, columns, what)


@functools.lru_cache(maxsize=4)
def _read_table(path: Path, _mtime: int, id_field: str, columns: MetadataColumns,
                what: str) -> pd.DataFrame:  # fmt: skip
    wanted = [*columns.numeric, *columns.categorical]
    header = pd.read_csv(path, nrows=0).columns
    absent = [c for c in [id_field, *wanted] if c not in header]
    if absent:
        raise KitError(
            f"{path} ({what}) has no column {absent} that model.metadata_numeric / "
            f"model.metadata_categorical name. Its columns: {', '.join(header)}"
        )
    table = pd.read_csv(path, usecols=[id_field, *wanted], dtype={id_field: str},
                        low_memory=False)  # fmt: skip
    return table.drop_duplicates(id_field).set_index(id_field)


def vocabularies(table: pd.DataFrame, columns: MetadataColumns) -> dict[str, list[str]]:
    """Each categorical column's values, sorted (code k+1 is the k-th)."""
    return {c: sorted(table[c].dropna().astype(str).unique()) for c in columns.categorical}


def encode(table: pd.DataFrame, ids, columns: MetadataColumns, vocab: dict) -> np.ndarray:
    """(N, width) float32 for the IDs (an ID the table lacks is an error naming it)."""
    missing = pd.Index(ids).difference(table.index)
    if len(missing):
        raise KitError(
            f"No metadata row for {len(missing)} image(s) (first: {missing[0]!r}): every image "
            "needs a row in the CSV its metadata columns are read from"
        )
    rows = table.loc[list(ids)]
    values = rows[list(columns.numeric)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
    absent = np.isnan(values)
    codes = [
        rows[c].astype(str).map({v: k + 1 for k, v in enumerate(vocab[c])}).fillna(0)
        .where(rows[c].notna(), 0).to_numpy(np.float32)
        for c in columns.categorical
    ]  # fmt: skip
    parts = [np.where(absent, 0.0, values), absent.astype(np.float32), *(c[:, None] for c in codes)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def missing_report(encoded: np.ndarray, columns: MetadataColumns) -> dict[str, int]:
    """Missing values per column (a category the vocabulary lacks counts as missing)."""
    n = len(columns.numeric)
    found = dict(zip(columns.numeric, encoded[:, n : 2 * n].sum(axis=0).astype(int), strict=True))
    codes = encoded[:, 2 * n :]
    found.update(zip(columns.categorical, (codes == 0).sum(axis=0).astype(int), strict=True))
    return {c: int(v) for c, v in found.items() if v}


def training_statistics(encoded: np.ndarray, columns: MetadataColumns) -> tuple[list, list]:
    """Each numeric column's mean and std over the rows where it is present."""
    n = len(columns.numeric)
    values, absent = encoded[:, :n], encoded[:, n : 2 * n] > 0
    mean, std = [], []
    for j in range(n):
        present = values[~absent[:, j], j]
        mean.append(float(present.mean()) if len(present) else 0.0)
        std.append(float(present.std()) if len(present) > 1 and present.std() > 0 else 1.0)
    return mean, std
