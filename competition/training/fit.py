"""Training one fold: `model.fit` on a DataGenerator over the fold's training
split, validated on its held-out split, resumable after a kill, writing
everything to runs/<experiment>/fold<k>/.

What a fold needs is read once per command (`read_inputs`: the labels, the
folds, the image source) and sliced per fold (`fold_data`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from competition import runs
from competition.augmentation import placement
from competition.config import Config, check_fold
from competition.data.folds import read_folds
from competition.data.generator import DataGenerator, surfacing_load_errors
from competition.data.labels import read_labels
from competition.data.sources import cache_note, open_source
from competition.errors import KitError
from competition.evaluation import thresholds
from competition.evaluation.report import fold_table, save_curves
from competition.evaluation.scores import score, score_groups
from competition.fileio import disk_full_is_an_error, write_csv_atomic, write_text_atomic
from competition.layout import Layout, fold_dir
from competition.locks import LOCK, exclusive
from competition.progress import keras_verbose
from competition.training import callbacks as cb
from competition.training import strategy as accelerate
from competition.training.augment import host_augmenter, image_layers_on, training_model
from competition.training.losses import compile_args
from competition.training.model import build_model, load_checkpoint, resolve_weights


class TrainError(KitError, ValueError):
    """A fold that cannot be trained as asked."""


@dataclass(frozen=True)
class Inputs:
    """What every fold of a command reads: the label table, folds.csv and
    the training split's image source."""

    labels: pd.DataFrame
    folds: pd.DataFrame
    source: object


@dataclass(frozen=True)
class FoldData:
    fold: int
    train: pd.DataFrame  # image_id + label columns, in folds.csv order
    valid: pd.DataFrame
    y_train: np.ndarray  # (N, outputs) float32
    y_valid: np.ndarray
    source: object


def read_inputs(config: Config) -> Inputs:
    """Labels, folds and image source, read once; folds.csv checked against them."""
    layout = Layout.from_config(config)
    folds = read_folds(layout)
    k = config.folds.k
    if folds["fold"].max() >= k or folds["fold"].nunique() != k:
        raise TrainError(
            f"{layout.folds_csv} has folds {sorted(folds['fold'].unique())} but folds.k={k}. "
            "Run `make folds` again with this config."
        )
    labels = read_labels(config.task, layout.train_csv)
    missing = folds.loc[~folds["image_id"].isin(labels.index), "image_id"]
    if len(missing):
        raise TrainError(
            f"{layout.train_csv} has no labels for {len(missing)} images of {layout.folds_csv} "
            f"(e.g. {', '.join(missing[:3])}). Run `make folds` again."
        )
    note = cache_note(config, "train")
    if note:
        print(note)
    return Inputs(labels, folds, open_source(config, "train", fields=labels))


def fold_data(config: Config, inputs: Inputs, fold: int) -> FoldData:
    """The fold's training and validation rows with their targets."""
    check_fold(fold, config.folds.k)
    task = config.task
    columns = list(dict.fromkeys([*task.label_columns, *(task.metric.group_by or [])]))
    table = inputs.folds[["image_id", "fold"]].join(inputs.labels[columns], on="image_id")
    train, valid = table[table["fold"] != fold], table[table["fold"] == fold]
    for name, part in (("training", train), ("validation", valid)):
        if part.empty:
            raise TrainError(f"fold {fold} has an empty {name} split in folds.csv")
    train, valid = train.reset_index(drop=True), valid.reset_index(drop=True)
    return FoldData(fold, train, valid, task.targets(train), task.targets(valid), inputs.source)


def sample_repeats(config: Config, rows: pd.DataFrame) -> np.ndarray | None:
    """Draws per pass of each row: the largest weight of its positive labels
    (train.sample_weights), 1 for the rest; None without weights."""
    weights = config.train.sample_weights
    if not weights:
        return None
    repeats = np.ones(len(rows))
    for column, weight in weights.items():
        repeats = np.maximum(repeats, np.where(rows[column].to_numpy() > 0, weight, 1.0))
    return repeats


def make_generator(
    config: Config, data: FoldData, rows: pd.DataFrame, targets, *, training: bool, host=None
) -> DataGenerator:
    """`host`: the image layers to run on the host (a HostAugmenter), if there."""
    t = config.train
    return DataGenerator(
        rows["image_id"].tolist(),
        data.source,
        targets,
        batch_size=t.batch_size,
        shuffle=training,
        flips=placement(config.augment).host_flips if training and t.augment else None,
        augment_batch=host if training else None,
        seed=config.seed,
        workers=t.workers,
        use_multiprocessing=t.use_multiprocessing,
        max_queue_size=t.max_queue_size,
        steps_per_epoch=t.steps_per_epoch if training else 0,
        repeats=sample_repeats(config, rows) if training else None,
    )


def make_optimizer(t, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """AdamW; linear warmup to the learning rate, then cosine decay. `t`: the
    train section, or the sequence section (the same schedule keys)."""
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


def compiled_model(
    config: Config, input_shape, mean_target, steps_per_epoch: int, seed=0, image_layers=True
):
    """The network, with the in-graph augmentation in front when training
    augments (checkpoints hold the network alone: see training.augment)."""
    network = build_model(config.model, input_shape, config.task, mean_target)
    augment = config.augment if config.train.augment else None
    model = training_model(network, augment, seed, image_layers)
    model.compile(
        optimizer=make_optimizer(config.train, steps_per_epoch),
        jit_compile=config.train.jit_compile,
        steps_per_execution=config.train.steps_per_execution,
        **compile_args(config.task),
    )
    return model


def fold_callbacks(task, out: Path, patience: int) -> list[keras.callbacks.Callback]:
    """History, best checkpoint, TensorBoard, epoch backup, early stopping.
    The backup goes last: a kill before it re-runs the epoch, and
    trim_history drops the rows already logged for it."""
    lower = task.monitor_lower_is_better
    found = [
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        cb.BestCheckpoint(out / "best.keras", task.monitor, lower),
    ]
    try:
        import tensorboard  # noqa: F401

        found.append(keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard")))
    except ImportError:
        pass
    early = keras.callbacks.EarlyStopping(
        monitor=task.monitor,
        mode="min" if lower else "max",
        patience=patience,
    )
    return [*found, cb.EpochBackup(out / "backup"), early]


def fit_fold(config: Config, data: FoldData, out: Path, guard=None) -> DataGenerator:
    """Train (or resume) the fold; returns the training generator. `guard`,
    when given, is called before each epoch's writes (see train_fold)."""
    seed = config.seed + 1000 * data.fold
    t = config.train
    on_host = t.augment and image_layers_on(t.augment_on, t.use_multiprocessing) == "host"
    host = host_augmenter(config.augment, seed) if on_host else None
    train_gen = make_generator(config, data, data.train, data.y_train, training=True, host=host)
    valid_gen = make_generator(config, data, data.valid, data.y_valid, training=False)
    strategy = accelerate.choose_strategy(config.train.strategy)
    with accelerate.scope(strategy):
        model = compiled_model(
            config,
            data.source.shape,
            data.y_train.mean(axis=0),
            len(train_gen),
            seed=seed,
            image_layers=not on_host,
        )
    start = cb.restore(model, out / "backup")
    cb.trim_history(out / "history.csv", start)
    if start:
        print(f"Resuming fold {data.fold} at epoch {start + 1} from {out / 'backup'}")
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
                *([cb.BeforeWrites(guard)] if guard else []),
                cb.EpochSync(train_gen),
                *fold_callbacks(config.task, out, config.train.early_stopping_patience),
            ],
        )
    return train_gen


def predict_rows(
    model: keras.Model, config: Config, data: FoldData, rows: pd.DataFrame, fallback: np.ndarray
) -> tuple[np.ndarray, dict[str, str]]:
    """Predictions in `rows` order; unreadable images get `fallback`."""
    gen = make_generator(config, data, rows, None, training=False)
    with surfacing_load_errors(gen):
        predictions = model.predict(gen, verbose=0)
    return gen.fill_unreadable(predictions, fallback), gen.failed


def oof_table(config: Config, rows: pd.DataFrame, truth: np.ndarray, predictions) -> pd.DataFrame:
    """image_id, [group,] pred_<output>..., label_<output>...: the out-of-fold predictions."""
    outputs = config.task.outputs
    oof = pd.DataFrame({"image_id": rows["image_id"]})
    groups = score_groups(config.task, rows)
    if groups is not None:
        oof["group"] = groups
    oof[[f"pred_{name}" for name in outputs]] = predictions
    oof[[f"label_{name}" for name in outputs]] = truth
    return oof


def tune_cuts(config: Config, data: FoldData, predictions: np.ndarray) -> dict[str, list]:
    """Each ordinal head's cuts, tuned on this fold's validation predictions."""
    cuts = {}
    for head, part in config.task.head_slices():
        if head.kind == "ordinal":
            truth, values = data.y_valid[:, part.start], predictions[:, part.start]
            cuts[head.name] = thresholds.tune(truth, values, len(head.classes))
    return cuts


def evaluate_fold(config: Config, data: FoldData, out: Path, constant: np.ndarray) -> dict:
    """Out-of-fold predictions and scores from the best checkpoint; an
    ordinal head's tuned cuts saved beside it (thresholds.json)."""
    task = config.task
    model = load_checkpoint(out / "best.keras", config.model.safe_mode)
    predictions, failed = predict_rows(model, config, data, data.valid, constant)
    write_csv_atomic(out / "oof.csv", oof_table(config, data.valid, data.y_valid, predictions))
    groups = score_groups(task, data.valid)
    scores = score(task, data.y_valid, predictions, constant=constant, groups=groups)
    cuts = tune_cuts(config, data, predictions)
    if cuts:
        write_text_atomic(out / thresholds.FILE, json.dumps(cuts, indent=2))
        if task.metric_head.name in cuts:  # tuned on these rows, so it flatters them
            tuned = score(
                task, data.y_valid, predictions, constant, groups, cuts[task.metric_head.name]
            )
            scores["score_tuned_cuts"] = tuned["score"]
    return {"fold": data.fold, **scores, "unreadable_in_validation": failed}


def _finished(config: Config, fold: int) -> dict | None:
    """The metrics of the fold when it finished training on the same inputs;
    None when it has not finished; an error naming what differs otherwise
    (a half-trained fold is not resumed from other inputs either)."""
    runs.check_same_inputs(
        config,
        fold,
        f"Train it again with --force (make train FOLD={fold} ARGS=--force), or train this "
        "config under another experiment name (--set experiment=NAME).",
    )
    out = fold_dir(config, fold)
    if not (out / "metrics.json").exists():
        return None
    print(f"Fold {fold} already trained ({out / 'metrics.json'}); --force trains it again.")
    return json.loads((out / "metrics.json").read_text())


def train_fold(config: Config, inputs: Inputs, fold: int, force: bool = False, guard=None) -> dict:
    """Train, evaluate and report one fold; a finished fold is not trained again.
    `guard` (a cluster attempt's ownership check) is called before every write
    to the fold folder after training starts, and raises to stop the attempt."""
    data = fold_data(config, inputs, fold)  # every input error before anything is written
    finished = None if force else _finished(config, fold)
    if finished is not None:
        return finished
    resolve_weights(config.model)  # a missing weights file before the fold folder exists
    with exclusive(fold_dir(config, fold), f"fold {fold} of experiment {config.experiment!r}"):
        return _train_fold(config, data, fold, force, guard)


def _train_fold(config: Config, data: FoldData, fold: int, force: bool, guard) -> dict:
    out = fold_dir(config, fold)
    if force:  # everything but the lock this run holds
        for child in (c for c in out.iterdir() if c.name != LOCK):
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    runs.record_inputs(config, fold)
    keras.utils.set_random_seed(config.seed + fold)
    accelerate.set_precision(config.train.mixed_precision)
    started = time.perf_counter()
    with disk_full_is_an_error(out):  # Keras' own history.csv appends, too
        train_gen = fit_fold(config, data, out, guard)
    if guard:
        guard()
    constant = data.y_train.mean(axis=0)
    metrics = evaluate_fold(config, data, out, constant)
    metrics["constant_prediction"] = dict(
        zip(config.task.outputs, map(float, constant), strict=True)
    )
    metrics["unreadable_in_training"] = dict(train_gen.failed)
    if guard:
        guard()
    return finish_fold(config, out, metrics, started)


def finish_fold(config: Config, out: Path, metrics: dict, started: float) -> dict:
    """The fold's time, curves and metrics.json; its backup removed; its table printed."""
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    save_curves(out / "history.csv", out / "curves.png", config.task.monitor)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    shutil.rmtree(out / "backup", ignore_errors=True)
    print(fold_table(metrics))
    return metrics


def train_folds(
    config: Config, folds: list[int], force: bool = False, train_one=None
) -> list[dict]:
    """Train the folds one after another (`train_one`: train_fold, or another
    stage's function with its signature); the inputs are read once for all."""
    for fold in folds:
        check_fold(fold, config.folds.k)
    inputs = read_inputs(config)
    results = []
    for fold in folds:
        results.append((train_one or train_fold)(config, inputs, fold, force))
        keras.backend.clear_session()
    return results
