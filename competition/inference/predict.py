"""Inference: the best checkpoint of each trained fold, every test-time
augmentation, in one batched `model.predict` over a test DataGenerator.

The folds and the TTA views are wrapped into one Keras model whose output is
(batch, folds, views, outputs): each test image is read and decoded once,
however many models and views there are. Views are averaged, then the folds
are combined as configured, and the table (one row per image, one column
per model output) goes to runs/<experiment>/test_preds.csv before the
submission is built from it.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd

from competition import runs
from competition.config import Config
from competition.data.generator import DataGenerator, surfacing_load_errors
from competition.data.pixelspec import model_input_shape
from competition.data.sources import open_source
from competition.inference import submission as sub
from competition.inference.assemble import (
    PredictError,
    check_folds,
    fallback_of,
    finish,
    predictions_table,
    test_images,
)
from competition.inference.ensemble import combine_folds
from competition.inference.tta import TTA_AXES
from competition.layout import Layout, fold_dir, run_dir
from competition.locks import exclusive
from competition.progress import keras_verbose
from competition.training.model import check_input_shape, load_checkpoint


def load_fold_model(config: Config, fold: int) -> keras.Model:
    """The fold's best checkpoint, loaded in safe mode and checked against the config."""
    path = fold_dir(config, fold) / "best.keras"
    model = load_checkpoint(path, config.model.safe_mode)
    check_input_shape(model, model_input_shape(config), len(config.task.outputs), str(path))
    model.name = f"fold{fold}"  # nested models need distinct names
    return model


def tta_view(inputs, name: str):
    for axis in TTA_AXES[name]:
        inputs = keras.ops.flip(inputs, axis=axis)
    return inputs


def ensemble_model(models: list[keras.Model], tta: list[str], shape) -> keras.Model:
    """One model: image -> (folds, views, outputs)."""
    inputs = keras.Input(shape=shape, name="image")
    views = [tta_view(inputs, name) for name in tta]
    per_fold = [keras.ops.stack([model(view) for view in views], axis=1) for model in models]
    return keras.Model(inputs, keras.ops.stack(per_fold, axis=1), name="ensemble")


def inference_generator(config: Config, image_ids: list[str], source) -> DataGenerator:
    """Test images in the given order, unshuffled, unaugmented, last batch kept."""
    return DataGenerator(
        image_ids,
        source,
        batch_size=config.predict.batch_size,
        workers=config.train.workers,
        use_multiprocessing=config.train.use_multiprocessing,
        max_queue_size=config.train.max_queue_size,
    )


def predict_test(
    config: Config, folds: list[int], image_ids: list[str], fields: pd.DataFrame | None
) -> tuple[pd.DataFrame, dict]:
    """Per-image outputs (index image_id, columns the task's outputs) for the
    test images (`fields`: their path fields, see test_images), and a summary.
    Stage 2 (the sequence models) when predict.stage resolves to it."""
    from competition.sequence.predict import predict_sequence, stage_for

    stage = stage_for(config, folds)
    source = open_source(config, "test", fields)
    started = time.perf_counter()
    if stage == 2:
        combined, unreadable = predict_sequence(config, folds, image_ids, fields, source)
    else:
        combined, unreadable = predict_cnn(config, folds, image_ids, source)
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
        "fallback": fallback_of(config, folds),
        "unreadable": dict(sorted(unreadable.items())),
    }
    return table, summary


def predict_cnn(
    config: Config, folds: list[int], image_ids: list[str], source
) -> tuple[np.ndarray, dict[str, str]]:
    """Stage 1: every fold's CNN and TTA view in one pass over the images;
    (N, outputs) combined over the folds, and the images that could not be read."""
    return run_ensemble(load_ensemble(config, folds), config, image_ids, source)


def load_ensemble(config: Config, folds: list[int]) -> keras.Model:
    """Every fold's best checkpoint and TTA view in one model: image -> (folds, views, outputs)."""
    models = [load_fold_model(config, fold) for fold in folds]
    return ensemble_model(models, config.predict.tta, model_input_shape(config))


def run_ensemble(
    model: keras.Model, config: Config, image_ids: list[str], source
) -> tuple[np.ndarray, dict[str, str]]:
    """(N, outputs) combined over the folds, and the images that could not be read."""
    generator = inference_generator(config, image_ids, source)
    with surfacing_load_errors(generator):
        outputs = model.predict(generator, verbose=keras_verbose())  # (N, folds, views, outputs)
    if len(outputs) != len(image_ids):
        raise PredictError(f"predict returned {len(outputs)} rows for {len(image_ids)} images")
    return combine_folds(outputs.mean(axis=2), config.predict.ensemble), dict(generator.failed)


def predict_and_submit(config: Config, folds: list[int] | None = None, force: bool = False) -> dict:
    """test_preds.csv, then the checked submission file; returns the summary."""
    folds = runs.select_folds(config, folds)
    if not force:
        check_folds(config, folds)
    sample = sub.read_sample(config.task, Layout.from_config(config).sample_submission)
    image_ids, fields = test_images(config, sample)
    with exclusive(run_dir(config), f"the predictions of experiment {config.experiment!r}"):
        table, summary = predict_test(config, folds, image_ids, fields)
        return finish(config, folds, sample, table, fields, summary)
