"""Inference: the best checkpoint of each trained fold, every test-time
augmentation, in one batched `model.predict` over a test DataGenerator.

The folds and the TTA views are wrapped into one Keras model whose output is
(batch, folds, views, 6): each test image is read and decoded once, however
many models and views there are. Views are averaged (probabilities), then the
folds are combined as configured, and the table goes to
runs/<experiment>/test_preds.csv.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import yaml

from competition.cache import open_source
from competition.config import Config
from competition.data import DataGenerator, surfacing_load_errors
from competition.data_report import write_report
from competition.errors import KitError
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.images import input_shape
from competition.labels import SUBTYPES
from competition.layout import Layout, fold_dir, run_dir
from competition.model import check_input_shape, load_checkpoint
from competition.progress import keras_verbose
from competition.submission import (
    build_submission,
    finalize,
    read_sample,
    sample_image_ids,
    submission_name,
    write_submission,
)

# Axes flipped by each TTA view, on (batch, H, W, C).
TTA_AXES = {"identity": (), "hflip": (2,), "vflip": (1,), "hvflip": (1, 2)}


class PredictError(KitError, ValueError):
    """Nothing to predict with, or a checkpoint that does not fit the config."""


def finished_folds(config: Config) -> list[int]:
    """Folds whose training finished: best.keras and metrics.json present."""
    found = []
    for folder in run_dir(config).glob("fold*"):
        suffix = folder.name.removeprefix("fold")
        finished = (folder / "best.keras").is_file() and (folder / "metrics.json").is_file()
        if suffix.isdigit() and finished:
            found.append(int(suffix))
    return sorted(found)


def select_folds(config: Config, requested: list[int] | None = None) -> list[int]:
    """The folds to ensemble: `requested` (or predict.folds), else every finished one."""
    requested = requested if requested is not None else config.predict.folds
    available = finished_folds(config)
    if not available:
        raise PredictError(
            f"No trained fold found in {run_dir(config)} (expected fold<k>/best.keras with its "
            f"metrics.json). Train one first: make train FOLD=0 (experiment "
            f"{config.experiment!r})."
        )
    if requested is None:
        return available
    missing = sorted(set(requested) - set(available))
    if missing:
        raise PredictError(
            f"Fold(s) {missing} of experiment {config.experiment!r} have not finished training "
            f"in {run_dir(config)}. Finished: {available}"
        )
    return sorted(set(requested))


def _check_preprocessing(config: Config, fold: int) -> None:
    """A fold trained on other windows would silently see other images."""
    saved_path = fold_dir(config, fold) / "config.yaml"
    if not saved_path.is_file():
        return
    saved = (yaml.safe_load(saved_path.read_text()) or {}).get("preprocess")
    current = config.to_dict()["preprocess"]
    if saved is not None and saved != current:
        raise PredictError(
            f"{saved_path}: fold {fold} was trained with preprocess {saved}, but the config "
            f"has {current}. Predict with the config it was trained with."
        )


def load_fold_model(config: Config, fold: int) -> keras.Model:
    """The fold's best checkpoint, loaded in safe mode and checked against the config."""
    _check_preprocessing(config, fold)
    path = fold_dir(config, fold) / "best.keras"
    model = load_checkpoint(path, config.model.safe_mode)
    check_input_shape(model, input_shape(config), str(path))
    model.name = f"fold{fold}"  # nested models need distinct names
    return model


def _view(inputs, name: str):
    for axis in TTA_AXES[name]:
        inputs = keras.ops.flip(inputs, axis=axis)
    return inputs


def ensemble_model(models: list[keras.Model], tta: list[str], shape) -> keras.Model:
    """One model: image -> (folds, views, 6) probabilities."""
    inputs = keras.Input(shape=shape, name="image")
    views = [_view(inputs, name) for name in tta]
    per_fold = [keras.ops.stack([model(view) for view in views], axis=1) for model in models]
    return keras.Model(inputs, keras.ops.stack(per_fold, axis=1), name="ensemble")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def rank_mean(per_fold: np.ndarray) -> np.ndarray:
    """Order by the folds' mean rank, valued by the sorted mean probabilities:
    rank averaging without losing calibration (log loss needs probabilities)."""
    from scipy.stats import rankdata

    order_key = rankdata(per_fold, axis=0).mean(axis=1)  # (N, 6)
    values = np.sort(per_fold.mean(axis=1), axis=0)
    out = np.empty_like(values)
    for k in range(per_fold.shape[-1]):
        out[np.argsort(order_key[:, k], kind="stable"), k] = values[:, k]
    return out


def combine_folds(per_fold: np.ndarray, method: str) -> np.ndarray:
    """(N, folds, 6) -> (N, 6): mean of probabilities, geometric mean of the
    odds (mean logit), or rank mean."""
    if method == "mean":
        return per_fold.mean(axis=1)
    if method == "geometric":
        return 1 / (1 + np.exp(-_logit(per_fold).mean(axis=1)))
    if method == "rank":
        return rank_mean(per_fold)
    raise PredictError(f"predict.ensemble must be mean, geometric or rank. Received: {method!r}")


def fold_prevalence(config: Config, folds: list[int]) -> np.ndarray:
    """The training prevalence the folds saw: the fallback for unreadable images."""
    rows = []
    for fold in folds:
        metrics = json.loads((fold_dir(config, fold) / "metrics.json").read_text())
        if "prevalence" in metrics:
            rows.append([metrics["prevalence"][name] for name in SUBTYPES])
        else:  # folds trained before prevalence was recorded: their validation labels
            oof = pd.read_csv(fold_dir(config, fold) / "oof.csv")
            rows.append(oof[[f"label_{name}" for name in SUBTYPES]].mean().tolist())
    return np.asarray(rows, dtype=np.float64).mean(axis=0)


def inference_generator(config: Config, image_ids: list[str]) -> DataGenerator:
    """Test images in the given order, unshuffled, unaugmented, last batch kept."""
    return DataGenerator(
        image_ids,
        open_source(config, "test"),
        batch_size=config.predict.batch_size,
        workers=config.train.workers,
        use_multiprocessing=config.train.use_multiprocessing,
        max_queue_size=config.train.max_queue_size,
    )


def predict_test(config: Config, folds: list[int]) -> tuple[pd.DataFrame, dict]:
    """Per-image probabilities (index image_id, columns SUBTYPES) for the
    sample submission's images, and a summary of the run."""
    layout = Layout.from_config(config)
    image_ids = sample_image_ids(read_sample(layout.sample_submission))
    models = [load_fold_model(config, fold) for fold in folds]
    model = ensemble_model(models, config.predict.tta, input_shape(config))
    generator = inference_generator(config, image_ids)
    started = time.perf_counter()
    with surfacing_load_errors(generator):
        outputs = model.predict(generator, verbose=keras_verbose())  # (N, folds, views, 6)
    seconds = time.perf_counter() - started
    if len(outputs) != len(image_ids):
        raise PredictError(f"predict returned {len(outputs)} rows for {len(image_ids)} images")
    probs = combine_folds(outputs.mean(axis=2), config.predict.ensemble)
    fallback = fold_prevalence(config, folds)
    generator.fill_unreadable(probs, fallback)
    table = pd.DataFrame(probs, index=pd.Index(image_ids, name="image_id"), columns=SUBTYPES)
    summary = {
        "folds": folds,
        "tta": list(config.predict.tta),
        "ensemble": config.predict.ensemble,
        "images": len(image_ids),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(image_ids) / max(seconds, 1e-9), 1),
        "fallback_prevalence": dict(zip(SUBTYPES, map(float, fallback), strict=True)),
        "unreadable": dict(sorted(generator.failed.items())),
    }
    return table, summary


def write_test_preds(config: Config, table: pd.DataFrame) -> Path:
    return write_csv_atomic(
        run_dir(config) / "test_preds.csv", table.reset_index(), float_format="%.6g"
    )


def score_if_labelled(config: Config, probs: pd.DataFrame) -> dict | None:
    """The synthetic competition ships its test labels: score the submission."""
    from competition.labels import read_labels
    from competition.metrics import weighted_log_loss
    from competition.synthetic import TEST_LABELS

    path = Layout.from_config(config).root / TEST_LABELS
    if not path.is_file():
        return None
    labels = read_labels(path)
    common = probs.index.intersection(labels.index)
    if common.empty:
        return None
    truth = labels.loc[common, list(SUBTYPES)].to_numpy(np.float64)
    baseline = np.broadcast_to(truth.mean(axis=0), truth.shape)
    return {
        "labels": str(path),
        "images": len(common),
        "weighted_log_loss": weighted_log_loss(truth, probs.loc[common].to_numpy()),
        "constant_prevalence_log_loss": weighted_log_loss(truth, baseline),
    }


def predict_and_submit(config: Config, folds: list[int] | None = None) -> dict:
    """test_preds.csv, then the checked submission file; returns the summary."""
    folds = select_folds(config, folds)
    table, summary = predict_test(config, folds)
    summary["test_preds"] = str(write_test_preds(config, table))
    p = config.predict
    final = finalize(table, p.clip, p.any_consistency)
    sample = read_sample(Layout.from_config(config).sample_submission)
    name = submission_name(config.experiment, folds, len(p.tta))
    path = write_submission(build_submission(sample, final), sample, p.submissions_dir, name)
    summary["submission"] = str(path)
    summary["rows"] = len(sample)
    summary["test_score"] = score_if_labelled(config, final)
    summary["data_report"] = str(write_report(config, echo=False))
    write_text_atomic(run_dir(config) / "predict.json", json.dumps(summary, indent=2))
    return summary
