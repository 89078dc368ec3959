"""Patient-grouped, stratified folds: no patient's images in two folds (a
patient's several studies would otherwise leak into validation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from competition.config import FoldsConfig
from competition.errors import KitError
from competition.fileio import write_csv_atomic
from competition.index import MissingTableError
from competition.layout import Layout, check_image_ids


class FoldError(KitError, ValueError):
    """Folds that cannot be made from the data given."""


def usable_images(labels: pd.DataFrame, index: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train images with labels and a readable file, excluded images with
    the reason each was left out)."""
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
    keep = train.index[train.readable].intersection(labels.index)
    usable = train.loc[keep, ["patient_id"]].join(labels)
    excluded = pd.concat(excluded, ignore_index=True).sort_values("image_id", ignore_index=True)
    return usable.reset_index(), excluded


def assign_folds(usable: pd.DataFrame, cfg: FoldsConfig) -> pd.DataFrame:
    """StratifiedGroupKFold(groups=PatientID, y=cfg.stratify) -> image_id, patient_id, fold."""
    patients = usable["patient_id"].nunique()
    if patients < cfg.k:
        raise FoldError(
            f"folds.k={cfg.k} needs at least {cfg.k} patients with usable images. "
            f"Received: {patients} patients ({len(usable)} images)"
        )
    splitter = StratifiedGroupKFold(n_splits=cfg.k, shuffle=True, random_state=cfg.seed)
    fold = np.full(len(usable), -1, dtype=np.int64)
    y, groups = usable[cfg.stratify].to_numpy(), usable["patient_id"].to_numpy()
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(usable)), y, groups)):
        fold[valid] = k
    folds = usable[["image_id", "patient_id"]].assign(fold=fold)
    return folds.sort_values("image_id", ignore_index=True)


def summarize(folds: pd.DataFrame, usable: pd.DataFrame, stratify: str) -> pd.DataFrame:
    """Images, patients and positive rate of the stratified label per fold."""
    merged = folds.merge(usable[["image_id", stratify]], on="image_id")
    return merged.groupby("fold").agg(
        images=("image_id", "size"),
        patients=("patient_id", "nunique"),
        positive_rate=(stratify, "mean"),
    )


def write_folds(
    layout: Layout, labels: pd.DataFrame, index: pd.DataFrame, cfg: FoldsConfig
) -> pd.DataFrame:
    usable, excluded = usable_images(labels, index)
    folds = assign_folds(usable, cfg)
    write_csv_atomic(layout.folds_excluded_csv, excluded)
    write_csv_atomic(layout.folds_csv, folds)
    print(summarize(folds, usable, cfg.stratify).to_string())
    if len(excluded):
        print(f"{len(excluded)} images left out of the folds (see {layout.folds_excluded_csv}):")
        print(excluded["reason"].value_counts().to_string())
    return folds


def read_folds(layout: Layout) -> pd.DataFrame:
    if not layout.folds_csv.exists():
        raise MissingTableError(
            f"No folds at {layout.folds_csv}. Run `make folds` (python -m competition folds)."
        )
    folds = pd.read_csv(layout.folds_csv, dtype={"image_id": str, "patient_id": str})
    check_image_ids(folds["image_id"].tolist(), str(layout.folds_csv))
    return folds
