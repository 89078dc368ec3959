"""`make predict`: the test set through the trained folds, stage 1 (every
fold's CNN x every TTA view in one batched pass) or stage 2 (per fold, the
test images' features through that fold's CNN, then that fold's sequence
model over each test series; a series- or study-level task: every slice
of each test unit through that fold's frozen slice encoder, then its
pooled model), as predict.stage resolves; the folds'
outputs combined as predict.ensemble says; then test_preds.csv and the
checked submission (competition.pipeline.assemble). Folds are combined
after the sequence model: embeddings of separately trained CNNs do not
share a basis, their outputs do.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd

from competition.config import Config
from competition.data.sources import open_source
from competition.errors import KitError
from competition.inference import submission as sub
from competition.inference.ensemble import combine_folds
from competition.inference.predict import (
    ensemble_model,
    ensemble_vocabularies,
    load_fold_model,
    run_ensemble,
)
from competition.locks import exclusive
from competition.pipeline import runs
from competition.pipeline.assemble import (
    check_folds,
    finish,
    predictions_table,
    test_images,
    training_mean_record,
)
from competition.pipeline.generators import inference_generator
from competition.pipeline.train_seq import fold_features, headers_of, unit_features
from competition.sequence import units as unit_stage
from competition.sequence.series import predict_with_sequence
from competition.training.model import load_checkpoint


def stage_for(config: Config, folds: list[int]) -> int:
    """predict.stage resolved: auto is 2 when every fold has a sequence model."""
    wanted = config.predict.stage
    ready = [f for f in folds if config.runs.has_sequence(f)]
    if wanted == 2 and len(ready) < len(folds):
        missing = sorted(set(folds) - set(ready))
        raise KitError(
            f"predict.stage=2 but fold(s) {missing} have no trained sequence stage "
            f"({config.runs.sequence(missing[0])}). Run make train-seq FOLD={missing[0]}, "
            "or predict with predict.stage=1."
        )
    if wanted == "auto":
        return 2 if folds and len(ready) == len(folds) else 1
    return int(wanted)


def load_ensemble(config: Config, folds: list[int]) -> keras.Model:
    """Every fold's best checkpoint and TTA view in one model: image -> (folds, views, outputs)."""
    shape, outputs = config.input_shape, len(config.task.outputs)
    models = [
        load_fold_model(
            config.runs.fold(fold) / "best.keras",
            shape,
            outputs,
            f"fold{fold}",
            config.model.safe_mode,
        )
        for fold in folds
    ]
    return ensemble_model(models, config.predict.tta, shape)


def predict_cnn(
    config: Config, folds: list[int], image_ids: list[str], source
) -> tuple[np.ndarray, dict[str, str]]:
    """Stage 1: every fold's CNN and TTA view in one pass over the images;
    (N, outputs) combined over the folds, and the images that could not be read."""
    model = load_ensemble(config, folds)
    generator = inference_generator(config, image_ids, source, ensemble_vocabularies(model))
    return run_ensemble(model, generator, config.predict.ensemble)


def predict_sequence(
    config: Config, folds: list[int], image_ids: list[str], source
) -> tuple[np.ndarray, dict[str, str]]:
    """Stage 2: (N, outputs) combined over the folds, and the images that could not be read."""
    headers = headers_of(config, "test")
    per_fold, unreadable = [], {}
    for fold in folds:
        found = fold_features(config, fold, "test", image_ids, source)
        unreadable.update(found.unreadable)
        model = load_checkpoint(config.runs.sequence(fold) / "best.keras", config.model.safe_mode)
        per_fold.append(predict_with_sequence(model, config.sequence, config.seed, found, headers))
    return combine_folds(np.stack(per_fold, axis=1), config.predict.ensemble), unreadable


def predict_pooled_units(
    config: Config, folds: list[int], unit_ids: list[str], source
) -> tuple[np.ndarray, dict[str, str]]:
    """Stage 2 of a series- or study-level task: (N, outputs) combined over
    the folds, and the units with no readable slice."""
    per_fold, unreadable = [], {}
    for fold in folds:
        found = unit_features(config, fold, "test", unit_ids, source)
        unreadable.update(found.unreadable)
        model = load_checkpoint(config.runs.sequence(fold) / "best.keras", config.model.safe_mode)
        per_fold.append(unit_stage.predict_pooled(model, found, config.sequence))
    return combine_folds(np.stack(per_fold, axis=1), config.predict.ensemble), unreadable


def predict_test(
    config: Config, folds: list[int], image_ids: list[str], fields: pd.DataFrame | None
) -> tuple[pd.DataFrame, dict]:
    """Per-image outputs (index image_id, columns the task's outputs) for the
    test images (`fields`: their path fields, see test_images), and a summary."""
    stage = stage_for(config, folds)
    source = open_source(config.inputs, "test", fields)
    started = time.perf_counter()
    predict = predict_cnn
    if stage == 2:
        predict = predict_pooled_units if config.task.per_unit else predict_sequence
    combined, unreadable = predict(config, folds, image_ids, source)
    seconds = time.perf_counter() - started
    table = predictions_table(config, folds, image_ids, combined, unreadable)
    summary = {
        "folds": folds,
        "stage": stage,
        "tta": list(config.predict.tta),
        "ensemble": config.predict.ensemble,
        "images": len(image_ids),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(image_ids) / max(seconds, 1e-9), 1),
        "training_mean": training_mean_record(config, folds),
        "unreadable": dict(sorted(unreadable.items())),
    }
    return table, summary


def predict_and_submit(config: Config, folds: list[int] | None = None, force: bool = False) -> dict:
    """test_preds.csv, then the checked submission file; returns the summary."""
    folds = runs.select_folds(config, folds)
    if not force:
        check_folds(config, folds)
    sample = sub.read_sample(config.task, config.layout.sample_submission)
    image_ids, fields = test_images(config, sample)
    with exclusive(config.runs.root, f"the predictions of experiment {config.experiment!r}"):
        table, summary = predict_test(config, folds, image_ids, fields)
        return finish(config, folds, sample, table, fields, summary)
