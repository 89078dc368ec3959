"""The stacking stage's features, one row per image (or unit):

- the task's tabular columns, numeric or categorical: those the label CSV
  and the test CSV share (a column the test CSV lacks is a training-only
  column, often a leak of the label), minus IDs, labels and the grouping key;
- patient-relative ("ugly duckling") features: each numeric column against
  the patient's other rows (the patient's mean and std, the z-score, the
  rank within the patient) and the rows per patient, computed within each
  split (a test patient is compared with their own test rows);
- the chosen experiments' predictions: out-of-fold for the training rows,
  the fold ensemble's for the test rows (and their patient-relative forms).

Categorical columns share one category list across train and test, so a
code means the same value in both; missing values stay missing (LightGBM
sends them down a learned branch) and are counted for the report."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from competition.errors import KitError

NUMERIC_SHARE = 0.98  # a column is numeric when this share of its values parse as numbers


@dataclass
class Features:
    train: pd.DataFrame  # index image_id
    test: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    missing: dict[str, int]  # column -> missing values over train and test


def tabular_columns(
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    reserved: set[str],
    columns: list[str] | None,
    exclude: list[str],
) -> list[str]:
    """The tabular columns to use: `columns`, else every column both tables share."""
    if columns is not None:
        for table, name in ((train, "label CSV"), (test, "test CSV")):
            absent = [c for c in columns if table is not None and c not in table]
            if absent:
                raise KitError(
                    f"stack.columns names {absent}, which the {name} lacks. Its columns: "
                    f"{', '.join(map(str, table.columns))}"
                )
        return [c for c in columns if c not in exclude]
    shared = [c for c in train.columns if test is not None and c in test.columns]
    return [c for c in shared if c not in reserved and c not in exclude]


def _is_numeric(values: pd.Series) -> bool:
    present = values.dropna()
    if present.empty:
        return False
    return pd.to_numeric(present, errors="coerce").notna().mean() >= NUMERIC_SHARE


def split_kinds(table: pd.DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    numeric = [c for c in columns if _is_numeric(table[c])]
    return numeric, [c for c in columns if c not in numeric]


def relative(table: pd.DataFrame, patients: pd.Series, numeric: list[str]) -> pd.DataFrame:
    """Each numeric column against the patient's rows: mean, std, z-score,
    rank (0..1 within the patient); and the patient's row count."""
    by = table[numeric].groupby(patients.to_numpy())
    mean = by.transform("mean")
    std = by.transform("std").fillna(0.0)
    out = {}
    for column in numeric:
        out[f"{column}__pmean"] = mean[column]
        out[f"{column}__pstd"] = std[column]
        out[f"{column}__pz"] = (table[column] - mean[column]) / (std[column] + 1e-6)
        out[f"{column}__prank"] = by[column].rank(pct=True)
    out["rows_per_patient"] = patients.map(patients.value_counts()).to_numpy()
    return pd.DataFrame(out, index=table.index)


def kinds(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> tuple[list, list]:
    """(numeric, categorical) columns, judged over the training and test rows."""
    return split_kinds(pd.concat([train[columns], test[columns]]), columns)


def encode(
    table: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    categories: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """The columns as LightGBM takes them: numbers (unparsable: missing) and
    pandas categories (`categories`: the values each may take, else those present)."""
    out = table[numeric].apply(pd.to_numeric, errors="coerce")
    for column in categorical:
        values = table[column].astype("string")
        known = categories.get(column) if categories else None
        out[column] = pd.Categorical(values, categories=known)
    return out[[*numeric, *categorical]]


def with_predictions_and_relative(
    encoded: pd.DataFrame,
    source: pd.DataFrame,
    patient_key: str | None,
    predictions: pd.DataFrame | None,
    numeric: list[str],
    with_relative: bool,
) -> pd.DataFrame:
    """One split's features: encoded columns, the experiments' predictions, and
    the patient-relative forms of both (within this split)."""
    scored = list(numeric)
    if predictions is not None:
        encoded = encoded.join(predictions)
        scored += list(predictions.columns)
    if with_relative and patient_key:
        encoded = encoded.join(relative(encoded, source[patient_key].astype(str), scored))
    return encoded.rename(columns=plain)


def build(
    train: pd.DataFrame,
    test: pd.DataFrame,
    columns: list[str],
    patient_key: str | None,
    predictions: tuple[pd.DataFrame, pd.DataFrame] | None,
    with_relative: bool,
) -> Features:
    """The feature tables of the training and test rows (both indexed by
    image ID; `predictions`: the experiments' columns for train and test).
    Categorical columns get one category list across both splits."""
    numeric, categorical = kinds(train, test, columns)
    both = pd.concat([train[columns], test[columns]])
    categories = {c: sorted(both[c].dropna().astype(str).unique()) for c in categorical}
    missing = {c: int(both[c].isna().sum()) for c in columns if both[c].isna().any()}
    parts = []
    for k, table in enumerate((train, test)):
        encoded = encode(table, numeric, categorical, categories)
        scores = predictions[k] if predictions is not None else None
        parts.append(
            with_predictions_and_relative(
                encoded, table, patient_key, scores, numeric, with_relative
            )
        )
    return Features(
        parts[0], parts[1], [plain(c) for c in numeric], [plain(c) for c in categorical], missing
    )


def plain(name: str) -> str:
    """A feature name LightGBM takes (no JSON punctuation)."""
    return re.sub(r'[\[\]{}":,]', "_", str(name))


def oof_columns(stores, image_ids: list[str]) -> pd.DataFrame:
    """The experiments' out-of-fold predictions as feature columns for the training rows."""
    return prediction_columns(
        [(s.experiment, s.oof.set_index("image_id")[[f"pred_{o}" for o in s.outputs]]
          .rename(columns=lambda c: c.removeprefix("pred_"))) for s in stores],
        image_ids, "out-of-fold",
    )  # fmt: skip


def prediction_columns(
    tables: list[tuple[str, pd.DataFrame]], image_ids: list[str], what: str = "test"
) -> pd.DataFrame:
    """Each (experiment, its predictions indexed by ID, one column per output)
    as feature columns `pred__<experiment>__<output>` of `image_ids`."""
    columns = {}
    for experiment, table in tables:
        missing = pd.Index(image_ids).difference(table.index)
        if len(missing):
            raise KitError(
                f"Experiment {experiment!r} has no {what} prediction for {len(missing)} of the "
                f"rows (first: {missing[0]!r}): train every fold (make train FOLD=all) and "
                "predict (make predict) with it first"
            )
        for output in table.columns:
            columns[f"pred__{experiment}__{output}"] = table.loc[image_ids, output].to_numpy(
                np.float64
            )
    return pd.DataFrame(columns, index=pd.Index(image_ids, name="image_id"))
