"""Training one fold: `model.fit` on a DataGenerator over the fold's training
split, validated on its held-out split, resumable after a kill, writing
everything to runs/<experiment>/fold<k>/."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from competition import accelerate
from competition import callbacks as cb
from competition.cache import open_source
from competition.config import Config, check_fold
from competition.data import DataGenerator, surfacing_load_errors
from competition.data_report import write_report
from competition.errors import KitError
from competition.fileio import disk_full_is_an_error, write_csv_atomic, write_text_atomic
from competition.folds import read_folds
from competition.labels import SUBTYPES, read_labels
from competition.layout import Layout, fold_dir
from competition.metrics import (
    WeightedBCE,
    WeightedLogLoss,
    per_class_auc,
    per_class_log_loss,
    weighted_log_loss,
)
from competition.model import build_model, load_checkpoint, resolve_weights
from competition.progress import keras_verbose
from competition.report import fold_table, save_curves

MONITOR = "val_weighted_log_loss"


class TrainError(KitError, ValueError):
    """A fold that cannot be trained as asked."""


def split_fold(config: Config, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, valid rows): image_id + the six labels, from folds.csv."""
    k = config.folds.k
    check_fold(fold, k)
    layout = Layout.from_config(config)
    folds = read_folds(layout)
    if folds["fold"].max() >= k or folds["fold"].nunique() != k:
        raise TrainError(
            f"{layout.folds_csv} has folds {sorted(folds['fold'].unique())} but folds.k={k}. "
            "Run `make folds` again with this config."
        )
    labels = read_labels(layout.train_csv)
    missing = folds.loc[~folds["image_id"].isin(labels.index), "image_id"]
    if len(missing):
        raise TrainError(
            f"{layout.train_csv} has no labels for {len(missing)} images of {layout.folds_csv} "
            f"(e.g. {', '.join(missing[:3])}). Run `make folds` again."
        )
    table = folds.join(labels, on="image_id")
    train, valid = table[table["fold"] != fold], table[table["fold"] == fold]
    for name, part in (("training", train), ("validation", valid)):
        if part.empty:
            raise TrainError(f"fold {fold} has an empty {name} split in {layout.folds_csv}")
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def make_generator(
    config: Config, rows: pd.DataFrame, *, training: bool, labelled: bool = True
) -> DataGenerator:
    t = config.train
    return DataGenerator(
        rows["image_id"].tolist(),
        open_source(config, "train"),
        rows[list(SUBTYPES)].to_numpy(np.float32) if labelled else None,
        batch_size=t.batch_size,
        shuffle=training,
        augment=config.augment if training and t.augment else None,
        seed=config.seed,
        workers=t.workers,
        use_multiprocessing=t.use_multiprocessing,
        max_queue_size=t.max_queue_size,
    )


def make_optimizer(config: Config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """AdamW; linear warmup to the learning rate, then cosine decay."""
    t = config.train
    total = max(1, t.epochs * steps_per_epoch)
    warmup = min(total - 1, round(t.warmup_epochs * steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=t.learning_rate * (0.0 if warmup else 1.0),
        decay_steps=max(1, total - warmup),
        alpha=t.min_lr_ratio,
        warmup_target=t.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=t.weight_decay)


def compiled_model(config: Config, input_shape, prevalence, steps_per_epoch: int):
    model = build_model(config.model, input_shape, prevalence)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=WeightedBCE(),
        metrics=[WeightedLogLoss()],
        jit_compile=config.train.jit_compile,
        steps_per_execution=config.train.steps_per_execution,
    )
    return model


def _callbacks(out: Path, best: float) -> list[keras.callbacks.Callback]:
    # The backup goes last: a kill before it re-runs the epoch, and
    # trim_history drops any row already logged for it.
    found = [
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        cb.BestCheckpoint(out / "best.keras", MONITOR, best),
    ]
    try:
        import tensorboard  # noqa: F401

        found.append(keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard")))
    except ImportError:
        pass
    return [*found, cb.EpochBackup(out / "backup")]


def _early_stopping(config: Config) -> keras.callbacks.Callback:
    return keras.callbacks.EarlyStopping(
        monitor=MONITOR, mode="min", patience=config.train.early_stopping_patience
    )


def fit_fold(config: Config, fold: int, out: Path) -> tuple[keras.Model, DataGenerator]:
    """Train (or resume) the fold; returns the model and the training generator."""
    train_rows, valid_rows = split_fold(config, fold)
    train_gen = make_generator(config, train_rows, training=True)
    valid_gen = make_generator(config, valid_rows, training=False)
    prevalence = train_rows[list(SUBTYPES)].mean().to_numpy()
    strategy = accelerate.choose_strategy(config.train.strategy)
    with accelerate.scope(strategy):
        model = compiled_model(config, train_gen.source.shape, prevalence, len(train_gen))
    start = cb.restore(model, out / "backup")
    cb.trim_history(out / "history.csv", start)
    if start:
        print(f"Resuming fold {fold} at epoch {start + 1} from {out / 'backup'}")
    fit_train, fit_valid = accelerate.feed(strategy, train_gen, valid_gen, config.train.workers)
    with surfacing_load_errors(train_gen, valid_gen):
        model.fit(
            fit_train,
            validation_data=fit_valid,
            epochs=config.train.epochs,
            initial_epoch=start,
            shuffle=False,
            verbose=keras_verbose(),
            callbacks=[
                *_callbacks(out, cb.best_so_far(out / "best.keras", MONITOR)),
                _early_stopping(config),
            ],
        )
    return model, train_gen


def predict_rows(
    model: keras.Model, config: Config, rows: pd.DataFrame, fallback: np.ndarray
) -> tuple[np.ndarray, dict[str, str]]:
    """Predictions in `rows` order; unreadable images get `fallback`."""
    gen = make_generator(config, rows, training=False, labelled=False)
    with surfacing_load_errors(gen):
        predictions = model.predict(gen, verbose=0)
    return gen.fill_unreadable(predictions, fallback), gen.failed


def evaluate_fold(config: Config, fold: int, out: Path, prevalence: np.ndarray) -> dict:
    """Out-of-fold predictions and metrics from the best checkpoint."""
    _, valid_rows = split_fold(config, fold)
    model = load_checkpoint(out / "best.keras", config.model.safe_mode)
    predictions, failed = predict_rows(model, config, valid_rows, prevalence)
    truth = valid_rows[list(SUBTYPES)].to_numpy(np.float32)
    oof = pd.DataFrame({"image_id": valid_rows["image_id"]})
    for k, name in enumerate(SUBTYPES):
        oof[f"pred_{name}"] = predictions[:, k]
    for k, name in enumerate(SUBTYPES):
        oof[f"label_{name}"] = truth[:, k].astype(int)
    write_csv_atomic(out / "oof.csv", oof)
    baseline = np.broadcast_to(prevalence, truth.shape)
    return {
        "fold": fold,
        "images": len(valid_rows),
        "weighted_log_loss": weighted_log_loss(truth, predictions),
        "baseline_weighted_log_loss": weighted_log_loss(truth, baseline),
        "per_class_log_loss": per_class_log_loss(truth, predictions),
        "per_class_auc": per_class_auc(truth, predictions),
        "unreadable_in_validation": failed,
    }


def train_fold(config: Config, fold: int, force: bool = False) -> dict:
    """Train, evaluate and report one fold; a finished fold is not trained again."""
    out = fold_dir(config, fold)
    if (out / "metrics.json").exists() and not force:
        print(f"Fold {fold} already trained ({out / 'metrics.json'}); --force trains it again.")
        return json.loads((out / "metrics.json").read_text())
    if force:
        shutil.rmtree(out, ignore_errors=True)
    split_fold(config, fold)  # every input error before anything is written
    resolve_weights(config.model)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.yaml")
    keras.utils.set_random_seed(config.seed + fold)
    accelerate.set_precision(config.train.mixed_precision)
    started = time.perf_counter()
    with disk_full_is_an_error(out):  # Keras' own history.csv appends, too
        _, train_gen = fit_fold(config, fold, out)
    prevalence = train_gen.labels.mean(axis=0)
    metrics = evaluate_fold(config, fold, out, prevalence)
    metrics["prevalence"] = dict(zip(SUBTYPES, map(float, prevalence), strict=True))
    metrics["unreadable_in_training"] = dict(train_gen.failed)
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    save_curves(out / "history.csv", out / "curves.png", MONITOR)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    shutil.rmtree(out / "backup", ignore_errors=True)
    write_report(config, echo=False)
    print(fold_table(metrics))
    return metrics


def train_folds(config: Config, folds: list[int], force: bool = False) -> list[dict]:
    results = []
    for fold in folds:
        results.append(train_fold(config, fold, force))
        keras.backend.clear_session()
    return results
