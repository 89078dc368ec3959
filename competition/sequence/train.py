"""Training the sequence stage of one fold (`make train-seq FOLD=k`), in
`runs/<exp>/fold<k>/sequence/`, resumable like stage 1 (the same checkpoint,
epoch backup and history files).

No leakage: fold k's sequence model trains on the series of fold k's
training images only, through fold k's CNN (which trained on the same
images), and is scored on fold k's validation images, which neither model
saw. `train_ids.csv` records the images it trained on; `check_no_leak`
stops the run if one of them is a validation image.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import yaml

from competition.config import Config
from competition.errors import KitError
from competition.evaluation.scores import score, score_groups
from competition.fileio import disk_full_is_an_error, write_csv_atomic
from competition.layout import fold_dir
from competition.progress import keras_verbose
from competition.runs import sequence_dir
from competition.sequence import features as feats
from competition.sequence.network import build_sequence_model
from competition.sequence.series import SeriesBatches, predict_series, series_rows, series_table
from competition.training import callbacks as cb
from competition.training.fit import (
    FoldData,
    Inputs,
    finish_fold,
    fold_callbacks,
    fold_data,
    make_optimizer,
    oof_table,
)
from competition.training.losses import compile_args


class SequenceError(KitError, ValueError):
    """A sequence stage that cannot be trained or used as asked."""


def check_no_leak(train_ids, valid_ids, fold: int) -> None:
    """No image is both trained on and scored."""
    both = set(train_ids) & set(valid_ids)
    if both:
        raise SequenceError(
            f"fold {fold}: {len(both)} validation images are also training images of the "
            f"sequence stage (e.g. {sorted(both)[:3]}): its score would not be honest"
        )


def compiled_sequence_model(config: Config, feature_dim: int, steps_per_epoch: int):
    model = build_sequence_model(feature_dim, config.task, config.sequence)
    args = compile_args(config.task)
    model.compile(
        optimizer=make_optimizer(config.sequence, steps_per_epoch),
        loss=args["loss"],
        weighted_metrics=args["metrics"],  # padded steps weigh 0
    )
    return model


def _readable(ids: pd.Series, unreadable: dict) -> list[str]:
    return [i for i in ids if i not in unreadable]


def batches_for(
    config: Config, features: feats.Features, headers, labels=None, *, training=False, reverse=False
) -> SeriesBatches:
    return SeriesBatches(
        series_rows(features.ids, headers),
        features.embeddings,
        features.logits,
        labels,
        cfg=config.sequence,
        shuffle=training,
        augment=training,
        reverse=reverse,
        seed=config.seed,
    )


def predict_with_sequence(
    model: keras.Model, config: Config, features: feats.Features, headers
) -> np.ndarray:
    """Per-image outputs of the sequence model, in `features.ids` order;
    with reverse_tta, the mean of the forward and the reversed pass."""
    passes = [False, True] if config.sequence.reverse_tta else [False]
    outputs = [
        predict_series(model, batches_for(config, features, headers, reverse=r), len(features.ids))
        for r in passes
    ]
    return np.mean(outputs, axis=0)


def _saved_sequence_settings(folder: Path) -> dict | None:
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get("sequence")


def _finished(config: Config, fold: int) -> dict | None:
    folder = sequence_dir(config, fold)
    saved = _saved_sequence_settings(folder)
    now = config.to_dict()["sequence"]
    if saved is not None and saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise SequenceError(
            f"{folder} was trained with other sequence settings ({', '.join(changed)}). "
            f"Train it again with --force (make train-seq FOLD={fold} ARGS=--force), or use "
            "another experiment name."
        )
    if not (folder / "metrics.json").is_file():
        return None
    print(f"Fold {fold}'s sequence stage already trained; --force trains it again.")
    return json.loads((folder / "metrics.json").read_text())


def _fit(config, data: FoldData, train, valid, out: Path) -> None:
    cfg = config.sequence
    model = compiled_sequence_model(config, train.feature_dim, len(train))
    start = cb.restore(model, out / "backup")
    cb.trim_history(out / "history.csv", start)
    if start:
        print(f"Resuming fold {data.fold}'s sequence stage at epoch {start + 1}")
    model.fit(
        train,
        validation_data=valid,
        epochs=cfg.epochs,
        initial_epoch=start,
        shuffle=False,
        verbose=keras_verbose(),
        callbacks=fold_callbacks(config.task, out, cfg.early_stopping_patience),
    )


def train_sequence_fold(config: Config, inputs: Inputs, fold: int, force: bool = False) -> dict:
    """Stage 2 of one fold: features, fit, out-of-fold predictions and scores."""
    from competition.training.model import load_checkpoint

    if config.task.image_format != "dicom":
        raise SequenceError(
            f"The sequence stage reads each series in z order; the task's images are "
            f"{config.task.image_format} files, which do not form series."
        )
    data = fold_data(config, inputs, fold)
    stage1 = fold_dir(config, fold)
    if not (stage1 / "metrics.json").is_file():
        raise SequenceError(
            f"Fold {fold}'s CNN is not trained ({stage1 / 'metrics.json'} missing): the sequence "
            f"stage reads its features. Run make train FOLD={fold} first."
        )
    finished = None if force else _finished(config, fold)
    if finished is not None:
        return finished
    out = sequence_dir(config, fold)
    if force:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.yaml")
    started = time.perf_counter()
    cnn = load_checkpoint(stage1 / "best.keras", config.model.safe_mode)
    ids = [*data.train["image_id"], *data.valid["image_id"]]
    found = feats.fold_features(
        config,
        stage1,
        "train",
        ids,
        inputs.source,
        augmented=list(data.train["image_id"]),
        model=cnn,
    )
    headers = series_table(config, "train")
    train_ids = _readable(data.train["image_id"], found.unreadable)
    valid_ids = list(data.valid["image_id"])
    check_no_leak(train_ids, valid_ids, fold)
    write_csv_atomic(out / "train_ids.csv", pd.DataFrame({"image_id": train_ids}))
    y_train = config.task.targets(data.train.set_index("image_id").loc[train_ids])
    train = batches_for(config, found.select(train_ids), headers, y_train, training=True)
    valid = batches_for(config, found.select(valid_ids), headers, data.y_valid)
    keras.utils.set_random_seed(config.seed + fold)
    with disk_full_is_an_error(out):
        _fit(config, data, train, valid, out)
    metrics = evaluate_sequence(config, data, found.select(valid_ids), headers, out)
    return finish_fold(config, out, metrics, started)


def evaluate_sequence(config: Config, data: FoldData, valid: feats.Features, headers, out) -> dict:
    """Out-of-fold predictions of the best sequence checkpoint, scored beside stage 1's."""
    from competition.training.model import load_checkpoint

    task = config.task
    model = load_checkpoint(out / "best.keras", config.model.safe_mode)
    predictions = predict_with_sequence(model, config, valid, headers)
    stage1 = json.loads((fold_dir(config, data.fold) / "metrics.json").read_text())
    constant = np.array([stage1["constant_prediction"][n] for n in task.outputs])
    failed = [i for i in valid.ids if i in valid.unreadable]
    predictions[np.isin(valid.ids, failed)] = constant  # as stage 1 does
    write_csv_atomic(out / "oof.csv", oof_table(config, data.valid, data.y_valid, predictions))
    groups = score_groups(task, data.valid)
    scores = score(task, data.y_valid, predictions, constant=constant, groups=groups)
    return {
        "fold": data.fold,
        "stage": 2,
        **scores,
        "stage1_score": stage1.get("score"),
        "unreadable_in_validation": {i: valid.unreadable[i] for i in failed},
    }


def train_sequence_folds(config: Config, folds: list[int], force: bool = False) -> list[dict]:
    from competition.training.fit import train_folds

    return train_folds(config, folds, force, train_one=train_sequence_fold)
