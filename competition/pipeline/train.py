"""Stage 1, a CNN fold: `model.fit` on the fold's training split, validated
on its held-out split, through the fold lifecycle (reuse, one writer,
resume after a kill, metrics: competition.training.lifecycle), everything
in runs/<experiment>/fold<k>/: the resolved config.yaml and inputs.json
(what made it), the checkpoint, the history, oof.csv, metrics.json.

The labels, folds and image source are read once per command
(`read_inputs`) and sliced per fold (`fold_data`).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from competition.augment.layers import TrainingModel, training_model
from competition.config import Config, check_fold
from competition.data.generator import DataGenerator, surfacing_load_errors
from competition.evaluation import thresholds
from competition.evaluation.scores import score, score_groups
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.pipeline import runs
from competition.pipeline.generators import (
    fold_seed,
    host_augmentation,
    metadata_columns,
    prediction_generator,
    training_generator,
    validation_generator,
)
from competition.pipeline.inputs import FoldData, Inputs, fold_data, read_inputs
from competition.training import devices, lifecycle, records
from competition.training.losses import compile_args
from competition.training.model import load_checkpoint, resolve_weights
from competition.training.schedule import make_optimizer
from competition.training.series import build_network


def compiled_model(config: Config, train: DataGenerator, fold: int = 0) -> TrainingModel:
    """The task's network for the training generator's images, its heads
    starting at the training mean, with the augmentation's in-graph layers in
    front (none when `train` runs them on the host) and the label mixing in
    its step, compiled with the task's loss, its metric's Keras twin and the
    schedule sized to `len(train)` steps per epoch, in the precision
    train.mixed_precision asks for (a global Keras policy). Checkpoints
    (`save`) hold the network alone."""
    devices.set_precision(devices.precision(config.train.mixed_precision))
    outputs = len(config.task.outputs)  # the labels may carry slice targets after them
    mean = np.nan_to_num(np.nanmean(train.labels[:, :outputs], axis=0))  # NaN: missing, left out
    network = build_network(
        config.model,
        train.source.shape,
        config.task,
        mean,
        config.series,
        gate=config.train.freeze_epochs > 0,
        metadata=metadata_branch(config, train),
    )
    model = training_model(
        network,
        config.augment,
        fold_seed(config, fold),
        train.augment_batch is None,
        auxiliary_head(config, network),
    )
    model.compile(
        optimizer=make_optimizer(config.train, len(train)),
        jit_compile=devices.jit_compile(config.train.jit_compile),
        steps_per_execution=config.train.steps_per_execution,
        **compile_args(config.task, config.train.label_smoothing),
    )
    return model


def metadata_branch(config: Config, train: DataGenerator) -> dict | None:
    """The metadata branch's arguments from the fold's training rows (the
    numeric columns' mean and std, the vocabularies), or None; the missing
    values it will see are printed."""
    if train.extra is None:
        return None
    from competition.data import metadata

    columns = metadata_columns(config)
    mean, std = metadata.training_statistics(train.extra, columns)
    missing = metadata.missing_report(train.extra, columns)
    print(f"Metadata: {columns.width} inputs; missing in the training rows: {missing or 'none'}")
    return {"width": columns.width, "mean": mean, "std": std,
            "vocabularies": train.metadata_vocabularies}  # fmt: skip


def auxiliary_head(config: Config, network: keras.Model):
    """The per-slice head of series.slice_labels, or None."""
    settings = config.series.slice_labels
    if not config.task.per_unit or settings.csv is None:
        return None
    from competition.data.slice_labels import slice_head
    from competition.training.slice_head import SliceHead

    head, _ = slice_head(config.task)
    return SliceHead(network, len(head.columns), settings.weight, name="slice_head")


def effective_batch(config: Config, replicas: int) -> str:
    """What one optimizer update sees: batch x accumulated batches (per device)."""
    batch, accumulate = config.train.batch_size, config.train.accumulate
    line = f"Effective batch: {batch} a step x {accumulate} accumulated = {batch * accumulate}"
    line += " an update" + (f" ({batch // replicas} a step per device)" if replicas > 1 else "")
    return line + (f"; weights averaged (EMA {config.train.ema:g})" if config.train.ema else "")


def fit_fold(config: Config, data: FoldData, out: Path, guard=None) -> DataGenerator:
    """Train (or resume) the fold; returns the training generator. `guard`,
    when given, is called before each epoch's writes (see train_fold)."""
    train = training_generator(config, data, host_augmentation(config, data.fold))
    valid = validation_generator(config, data)
    spread = devices.spread(config.train.strategy)
    print(effective_batch(config, spread.replicas))
    with spread.scope():
        model = compiled_model(config, train, data.fold)
        fed_train, fed_valid = spread.feed(train, valid, config.train.workers)
        with surfacing_load_errors(train, valid):  # through tf.data under TensorFlow's strategy
            lifecycle.fit_resumable(
                model,
                fed_train,
                fed_valid,
                out,
                f"fold {data.fold}",
                task=config.task,
                epochs=config.train.epochs,
                patience=config.train.early_stopping_patience,
                guard=guard,
                generator=train,
                ema=config.train.ema > 0,
                freeze_epochs=config.train.freeze_epochs,
            )
    return train


def predict_rows(
    model: keras.Model, config: Config, data: FoldData, rows: pd.DataFrame
) -> tuple[np.ndarray, dict[str, str]]:
    """Predictions in `rows` order; unreadable images get the training mean."""
    gen = prediction_generator(config, data, rows)
    with surfacing_load_errors(gen):
        predictions = model.predict(gen, verbose=0)
    return gen.fill_unreadable(predictions, data.training_mean), gen.failed


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


def evaluate_fold(config: Config, data: FoldData, out: Path) -> dict:
    """Out-of-fold predictions and scores from the best checkpoint; an
    ordinal head's tuned cuts saved beside it (thresholds.json)."""
    task, mean = config.task, data.training_mean
    model = load_checkpoint(out / "best.keras", config.model.safe_mode)
    predictions, failed = predict_rows(model, config, data, data.valid)
    write_csv_atomic(out / "oof.csv", oof_table(config, data.valid, data.y_valid, predictions))
    groups = score_groups(task, data.valid)
    scores = score(task, data.y_valid, predictions, constant=mean, groups=groups)
    cuts = tune_cuts(config, data, predictions)
    if cuts:
        write_text_atomic(out / thresholds.FILE, json.dumps(cuts, indent=2))
        if task.metric_head.name in cuts:  # tuned on these rows, so it flatters them
            tuned = score(
                task, data.y_valid, predictions, mean, groups, cuts[task.metric_head.name]
            )
            scores["score_tuned_cuts"] = tuned["score"]
    return {"fold": data.fold, **scores, "unreadable_in_validation": failed}


def finished_fold(config: Config, fold: int) -> dict | None:
    """The metrics of the fold when it finished training on the same inputs;
    None when it has not finished; an error naming what differs otherwise
    (a half-trained fold is not resumed from other inputs either)."""
    runs.check_same_inputs(
        config,
        fold,
        f"Train it again with --force (make train FOLD={fold} ARGS=--force), or train this "
        "config under another experiment name (--set experiment=NAME).",
    )
    return lifecycle.finished_metrics(config.runs.fold(fold), f"Fold {fold}")


def train_fold(config: Config, inputs: Inputs, fold: int, force: bool = False, guard=None) -> dict:
    """Train, evaluate and report one fold; a finished fold is not trained again.
    `guard` (a cluster attempt's ownership check) is called before every write
    to the fold folder after training starts, and raises to stop the attempt."""
    data = fold_data(config, inputs, fold)  # every input error before anything is written
    finished = None if force else finished_fold(config, fold)
    if finished is not None:
        return finished
    resolve_weights(config.model)  # a missing weights file before the fold folder exists
    out = config.runs.fold(fold)
    with lifecycle.writing(out, f"fold {fold} of experiment {config.experiment!r}", force) as t0:
        runs.record_inputs(config, fold)
        keras.utils.set_random_seed(config.seed + fold)
        train = fit_fold(config, data, out, guard)
        if guard:
            guard()
        metrics = evaluate_fold(config, data, out)
        metrics[records.TRAINING_MEAN] = dict(
            zip(config.task.outputs, map(float, data.training_mean), strict=True)
        )
        metrics["unreadable_in_training"] = dict(train.failed)
        if train.extra is not None:  # the metadata branch's missing values, per column
            from competition.data.metadata import missing_report

            metrics["metadata_missing"] = missing_report(train.extra, metadata_columns(config))
        if guard:
            guard()
        return lifecycle.finish(out, metrics, t0, config.task)


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
    runs.keep_predictions(config)
    return results
