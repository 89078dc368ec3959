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

import json
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from competition import runs
from competition.config import Config
from competition.data.generator import DataGenerator, surfacing_load_errors
from competition.data.pixelspec import model_input_shape
from competition.data.sources import open_source
from competition.errors import KitError
from competition.evaluation import thresholds
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.inference import submission as sub
from competition.inference.ensemble import combine_folds
from competition.inference.tta import TTA_AXES
from competition.layout import Layout, fold_dir, run_dir
from competition.progress import keras_verbose
from competition.training.model import check_input_shape, load_checkpoint


class PredictError(KitError, ValueError):
    """Nothing to predict with, or a checkpoint that does not fit the config."""


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


def fold_cuts(config: Config, folds: list[int]) -> dict[str, list[float]]:
    """Each ordinal head's cuts: the mean of those the folds tuned."""
    saved = [
        json.loads(path.read_text())
        for fold in folds
        if (path := fold_dir(config, fold) / thresholds.FILE).is_file()
    ]
    return thresholds.mean_cuts(saved)


def fold_constant(config: Config, folds: list[int]) -> np.ndarray:
    """The mean training target the folds saw: the fallback for unreadable images."""
    rows = []
    for fold in folds:
        metrics = json.loads((fold_dir(config, fold) / "metrics.json").read_text())
        # folds trained before the task spec recorded it as `prevalence`
        constant = metrics.get("constant_prediction") or metrics["prevalence"]
        rows.append([constant[name] for name in config.task.outputs])
    return np.asarray(rows, dtype=np.float64).mean(axis=0)


def test_images(config: Config, sample: sub.Sample) -> tuple[list[str], pd.DataFrame | None]:
    """The images to predict and a table of their path fields (when the
    template needs more than the ID): the sample's images, the test folder's
    files, or the test CSV's rows, as task.images.test_list says."""
    task, layout = config.task, Layout.from_config(config)
    mode = task.images.test_list
    if mode == "sample":
        return sample.images(), None
    if mode == "csv":
        from competition.data import csvfile

        key = task.submission.reduce.key
        fields = [task.id_field, *task.template.extra_fields, *([key] if key else [])]
        table = csvfile.read_strings(layout.test_csv, fields, "test CSV").to_pandas()
        table = table.drop_duplicates(task.id_field).set_index(task.id_field)
        return table.index.tolist(), table
    from competition.data.index import list_images

    found = [
        (image_id, path) for _, split, image_id, path in list_images(layout) if split == "test"
    ]
    if not found:
        raise PredictError(f"No test images in {layout.image_dir('test')}")
    fields = pd.DataFrame(
        [
            task.template.parse(Path(p).relative_to(layout.split_dir("test")).as_posix())
            for _, p in found
        ],
        index=pd.Index([i for i, _ in found]),
    )
    return fields.index.tolist(), fields


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


def check_folds(config: Config, folds: list[int]) -> None:
    """Every fold was trained from the inputs the current config describes."""
    for fold in folds:
        runs.check_same_inputs(
            config,
            fold,
            "Predict with the config these folds were trained with (the same CONFIG, "
            "DATA_DIR and ARGS as make train), or add --force to use them anyway.",
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
    if len(combined) != len(image_ids):
        raise PredictError(f"predict returned {len(combined)} rows for {len(image_ids)} images")
    fallback = fold_constant(config, folds)
    combined[np.isin(image_ids, list(unreadable))] = fallback
    outputs_names = config.task.outputs
    table = pd.DataFrame(
        combined, index=pd.Index(image_ids, name="image_id"), columns=outputs_names
    )
    summary = {
        "folds": folds,
        "stage": stage,
        "tta": list(config.predict.tta),
        "ensemble": config.predict.ensemble,
        "images": len(image_ids),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(image_ids) / max(seconds, 1e-9), 1),
        "fallback": dict(zip(outputs_names, map(float, fallback), strict=True)),
        "unreadable": dict(sorted(unreadable.items())),
    }
    return table, summary


def predict_cnn(
    config: Config, folds: list[int], image_ids: list[str], source
) -> tuple[np.ndarray, dict[str, str]]:
    """Stage 1: every fold's CNN and TTA view in one pass over the images;
    (N, outputs) combined over the folds, and the images that could not be read."""
    models = [load_fold_model(config, fold) for fold in folds]
    model = ensemble_model(models, config.predict.tta, model_input_shape(config))
    generator = inference_generator(config, image_ids, source)
    with surfacing_load_errors(generator):
        outputs = model.predict(generator, verbose=keras_verbose())  # (N, folds, views, outputs)
    if len(outputs) != len(image_ids):
        raise PredictError(f"predict returned {len(outputs)} rows for {len(image_ids)} images")
    return combine_folds(outputs.mean(axis=2), config.predict.ensemble), dict(generator.failed)


def score_if_labelled(config: Config, final: pd.DataFrame, cuts=None) -> dict | None:
    """The synthetic competitions ship their test labels: score the predictions."""
    from competition.data.labels import read_labels
    from competition.evaluation.scores import score, score_groups
    from competition.synthetic.generate import TEST_LABELS

    path = Layout.from_config(config).root / TEST_LABELS
    if not path.is_file():
        return None
    labels = read_labels(config.task, path)
    common = final.index.intersection(labels.index)
    if common.empty:
        return None
    rows = labels.loc[common]
    truth, groups = config.task.targets(rows), score_groups(config.task, rows)
    found = score(config.task, truth, final.loc[common].to_numpy(), groups=groups, thresholds=cuts)
    return {"labels": str(path), **found}


def submit(config: Config, folds: list[int], sample, table: pd.DataFrame, fields):
    """From the combined predictions (one row per test image): test_preds.csv,
    then the post-processed, decoded, checked submission. Returns the final
    values, the ordinal cuts used, and what was written."""
    task = config.task
    preds = write_csv_atomic(
        run_dir(config) / "test_preds.csv", table.reset_index(), float_format="%.6g"
    )
    final = pd.DataFrame(
        sub.postprocess(task, table.to_numpy()), index=table.index, columns=table.columns
    )
    cuts = fold_cuts(config, folds)
    values = sub.decode(task, final.to_numpy(), final.index, cuts)
    if task.submission.reduce.key:
        values = sub.reduce(values, fields[task.submission.reduce.key], task.submission.reduce.how)
    name = sub.submission_name(config.experiment, folds, len(config.predict.tta))
    frame = sub.build_submission(task, sample, values)
    path = sub.write_submission(task, frame, sample, config.predict.submissions_dir, name)
    written = {"test_preds": str(preds), "submission": str(path), "rows": len(frame), "cuts": cuts}
    return final, cuts, written


def predict_and_submit(config: Config, folds: list[int] | None = None, force: bool = False) -> dict:
    """test_preds.csv, then the checked submission file; returns the summary."""
    task = config.task
    folds = runs.select_folds(config, folds)
    if not force:
        check_folds(config, folds)
    sample = sub.read_sample(task, Layout.from_config(config).sample_submission)
    image_ids, fields = test_images(config, sample)
    table, summary = predict_test(config, folds, image_ids, fields)
    final, cuts, written = submit(config, folds, sample, table, fields)
    summary.update(written)
    metric_cuts = cuts.get(task.metric_head.name)
    summary["test_score"] = score_if_labelled(config, final, metric_cuts)
    write_text_atomic(run_dir(config) / "predict.json", json.dumps(summary, indent=2))
    return summary
