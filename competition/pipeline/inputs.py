"""What every fold of a command reads, once (`read_inputs`: the label table,
folds.csv, the training split's image source), and one fold's slice of it
(`fold_data`: its training and validation rows with their targets)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from competition.config import Config, check_fold
from competition.data.folds import read_folds
from competition.data.labels import read_labels
from competition.data.sources import cache_note, open_source
from competition.errors import KitError


@dataclass(frozen=True)
class Inputs:
    labels: pd.DataFrame
    folds: pd.DataFrame
    source: object  # the training split's image source


@dataclass(frozen=True)
class FoldData:
    fold: int
    train: pd.DataFrame  # image_id + label columns, in folds.csv order
    valid: pd.DataFrame
    y_train: np.ndarray  # (N, outputs) float32
    y_valid: np.ndarray
    source: object

    @property
    def training_mean(self) -> np.ndarray:
        """The mean training target per output: the heads' starting biases,
        the baseline score, and the prediction for an unreadable image.
        Missing labels (NaN) are left out; an output never labelled is 0."""
        return np.nan_to_num(np.nanmean(self.y_train, axis=0))


def read_inputs(config: Config) -> Inputs:
    """Labels, folds and image source, read once; folds.csv checked against them."""
    layout = config.layout
    folds = read_folds(layout)
    k = config.folds.k
    if folds["fold"].max() >= k or folds["fold"].nunique() != k:
        raise KitError(
            f"{layout.folds_csv} has folds {sorted(folds['fold'].unique())} but folds.k={k}. "
            "Run `make folds` again with this config."
        )
    labels = read_labels(config.task, layout.train_csv)
    missing = folds.loc[~folds["image_id"].isin(labels.index), "image_id"]
    if len(missing):
        raise KitError(
            f"{layout.train_csv} has no labels for {len(missing)} images of {layout.folds_csv} "
            f"(e.g. {', '.join(missing[:3])}). Run `make folds` again."
        )
    note = cache_note(config.inputs, "train")
    if note:
        print(note)
    return Inputs(labels, folds, open_source(config.inputs, "train", fields=labels))


def fold_data(config: Config, inputs: Inputs, fold: int) -> FoldData:
    """The fold's training and validation rows with their targets."""
    check_fold(fold, config.folds.k)
    task = config.task
    columns = list(dict.fromkeys([*task.label_columns, *(task.metric.group_by or [])]))
    table = inputs.folds[["image_id", "fold"]].join(inputs.labels[columns], on="image_id")
    train, valid = table[table["fold"] != fold], table[table["fold"] == fold]
    for name, part in (("training", train), ("validation", valid)):
        if part.empty:
            raise KitError(f"fold {fold} has an empty {name} split in folds.csv")
    train, valid = train.reset_index(drop=True), valid.reset_index(drop=True)
    return FoldData(fold, train, valid, task.targets(train), task.targets(valid), inputs.source)
