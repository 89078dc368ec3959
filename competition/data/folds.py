"""Grouped, stratified folds: no group's images in two folds (a patient's
several studies would otherwise leak into validation). The task says what
a group is (a DICOM header field, a label CSV column, or each image on its
own) and which column the folds are stratified on."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from competition.data.index import MissingTableError
from competition.data.settings import FoldsConfig
from competition.errors import KitError
from competition.fileio import write_csv_atomic
from competition.ids import check_image_ids
from competition.layout import Layout
from competition.task import DICOM_GROUP_KEYS, TaskSpec


def _groups(task: TaskSpec, train: pd.DataFrame, labels: pd.DataFrame, keep: pd.Index) -> np.ndarray:
    """The group of each kept image; an image without one is its own group."""
    grouping = task.grouping
    if grouping.by == "dicom":
        found = train.loc[keep, DICOM_GROUP_KEYS[grouping.key]].to_numpy(dtype=object)
    elif grouping.by == "column":
        found = labels.loc[keep, grouping.key].to_numpy(dtype=object)
    else:
        found = np.full(len(keep), "", dtype=object)
    blank = pd.isna(found) | (found == "")
    found[blank] = keep.to_numpy(dtype=object)[blank]
    return found.astype(str)


def usable_images(
    task: TaskSpec, labels: pd.DataFrame, index: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train images with labels and a readable file: image_id, group and
    the stratify column; excluded images with the reason each was left out)."""
    train = index[index["split"] == "train"].set_index("image_id")
    excluded = [
        pd.DataFrame(
            {
                "image_id": train.index[~train.readable],
                "reason": train.reason[~train.readable].to_numpy(),
            }
        ),
        pd.DataFrame(
            {
                "image_id": labels.index.difference(train.index),
                "reason": "labelled but no image file",
            }
        ),
        pd.DataFrame(
            {
                "image_id": train.index.difference(labels.index),
                "reason": "image file without labels",
            }
        ),
    ]
    keep = train.index[train.readable].intersection(labels.index).sort_values()
    usable = pd.DataFrame(
        {
            "image_id": keep,
            "group": _groups(task, train, labels, keep),
            "stratify": labels.loc[keep, task.stratify_column].to_numpy(),
        }
    )
    excluded = pd.concat(excluded, ignore_index=True).sort_values("image_id", ignore_index=True)
    return usable, excluded


def assign_folds(usable: pd.DataFrame, folds_config: FoldsConfig) -> pd.DataFrame:
    """StratifiedGroupKFold(groups=group, y=stratify) -> image_id, group, fold."""
    groups = usable["group"].nunique()
    if groups < folds_config.k:
        raise KitError(
            f"folds.k={folds_config.k} needs at least {folds_config.k} groups with usable images. "
            f"Received: {groups} groups ({len(usable)} images)"
        )
    splitter = StratifiedGroupKFold(
        n_splits=folds_config.k, shuffle=True, random_state=folds_config.seed
    )
    fold = np.full(len(usable), -1, dtype=np.int64)
    # Text classes (Lumbar's Normal/Mild, ...) and missing labels stratify as
    # codes; numeric labels as they are (the folds the kit always made).
    y = usable["stratify"]
    if not pd.api.types.is_numeric_dtype(y) or y.isna().any():
        y = pd.factorize(y, sort=True, use_na_sentinel=False)[0]
    y = np.asarray(y)
    groups = usable["group"].to_numpy()
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(usable)), y, groups)):
        fold[valid] = k
    folds = usable[["image_id", "group"]].assign(fold=fold)
    return folds.sort_values("image_id", ignore_index=True)


def summarize(folds: pd.DataFrame, usable: pd.DataFrame, stratify: str) -> pd.DataFrame:
    """Images, groups and the mean of the stratify column per fold (text
    classes: the share of the most common one)."""
    merged = folds.merge(usable[["image_id", "stratify"]], on="image_id")
    name = f"mean_{stratify}"
    if not pd.api.types.is_numeric_dtype(merged["stratify"]):
        common = merged["stratify"].mode().iloc[0]
        merged["stratify"] = (merged["stratify"] == common).astype(float)
        name = f"share_{stratify}={common}"
    return merged.groupby("fold").agg(
        images=("image_id", "size"),
        groups=("group", "nunique"),
        **{name: ("stratify", "mean")},
    )


def write_folds(
    layout: Layout, labels: pd.DataFrame, index: pd.DataFrame, folds_config: FoldsConfig
) -> pd.DataFrame:
    task = layout.task
    usable, excluded = usable_images(task, labels, index)
    folds = assign_folds(usable, folds_config)
    write_csv_atomic(layout.folds_excluded_csv, excluded)
    write_csv_atomic(layout.folds_csv, folds)
    print(summarize(folds, usable, task.stratify_column).to_string())
    if len(excluded):
        print(f"{len(excluded)} images left out of the folds (see {layout.folds_excluded_csv}):")
        print(excluded["reason"].value_counts().to_string())
    return folds


def read_folds(layout: Layout) -> pd.DataFrame:
    if not layout.folds_csv.exists():
        raise MissingTableError(
            f"No folds at {layout.folds_csv}. Run `make folds` (python -m competition folds)."
        )
    folds = pd.read_csv(layout.folds_csv, dtype={"image_id": str, "group": str})
    check_image_ids(folds["image_id"].tolist(), str(layout.folds_csv))
    return folds
