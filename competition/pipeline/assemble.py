"""From per-image predictions to the checked submission, without TensorFlow
(the cluster's driver uses it too): which test images, the training mean
for unreadable ones, the table, test_preds.csv, the post-processed, decoded
and checked submission, predict.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from competition.config import Config
from competition.errors import KitError
from competition.evaluation import thresholds
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.inference import submission as sub
from competition.pipeline import runs
from competition.training.records import read_metrics, training_mean

if TYPE_CHECKING:
    from competition.data.generator import DataGenerator


def fold_cuts(config: Config, folds: list[int]) -> dict[str, list[float]]:
    """Each ordinal head's cuts: the mean of those the folds tuned."""
    saved = [
        json.loads(path.read_text())
        for fold in folds
        if (path := config.runs.fold(fold) / thresholds.FILE).is_file()
    ]
    return thresholds.mean_cuts(saved)


def folds_training_mean(config: Config, folds: list[int]) -> np.ndarray:
    """The mean training target the folds saw: the prediction for an unreadable image."""
    outputs = config.task.outputs
    means = [training_mean(read_metrics(config.runs.fold(fold)), outputs) for fold in folds]
    return np.mean(means, axis=0)


def training_mean_record(config: Config, folds: list[int]) -> dict[str, float]:
    """{output: the folds' training mean}, for predict.json."""
    mean = folds_training_mean(config, folds)
    return dict(zip(config.task.outputs, map(float, mean), strict=True))


def test_images(config: Config, sample: sub.Sample) -> tuple[list[str], pd.DataFrame | None]:
    """The images to predict and a table of their path fields (when the
    template needs more than the ID): the sample's images, the test folder's
    files, or the test CSV's rows, as task.images.test_list says."""
    task, layout = config.task, config.layout
    mode = task.images.test_list
    if mode == "sample":
        return sample.images(), None
    if task.per_unit:
        return test_units(config), None
    if mode == "csv":
        from competition.data import csvfile

        key = task.submission.reduce.key
        fields = [task.id_field, *task.template.extra_fields, *([key] if key else [])]
        table = csvfile.read_strings(layout.test_csv, fields, "test CSV").to_pandas()
        table = table.drop_duplicates(task.id_field).set_index(task.id_field)
        return table.index.tolist(), table
    from competition.data.index import list_images

    found = [
        (image_id, path) for _, split, image_id, path, _ in list_images(layout) if split == "test"
    ]
    if not found:
        raise KitError(f"No test images in {layout.image_dir('test')}")
    fields = pd.DataFrame(
        [
            task.template.parse(Path(p).relative_to(layout.split_dir("test")).as_posix())
            for _, p in found
        ],
        index=pd.Index([i for i, _ in found]),
    )
    return fields.index.tolist(), fields


def test_units(config: Config) -> list[str]:
    """A series- or study-level task's test units: the test CSV's IDs (in
    their first order), or the units of the test folder's files."""
    task, layout = config.task, config.layout
    if task.images.test_list == "csv":
        from competition.data import csvfile

        table = csvfile.read_strings(layout.test_csv, [task.id_field], "test CSV").to_pandas()
        return table[task.id_field].drop_duplicates().tolist()
    from competition.data.index import split_index
    from competition.data.units import unit_index

    units = unit_index(task, split_index(layout, "test", config.data.workers), layout.root)
    if units.empty:
        raise KitError(f"No test images in {layout.image_dir('test')}")
    return units["image_id"].tolist()


def check_folds(config: Config, folds: list[int]) -> None:
    """Every fold was trained from the inputs the current config describes."""
    for fold in folds:
        runs.check_same_inputs(
            config,
            fold,
            "Predict with the config these folds were trained with (the same CONFIG, "
            "DATA_DIR and ARGS as make train), or add --force to use them anyway.",
        )


def predictions_table(
    config: Config, folds: list[int], image_ids: list[str], combined: np.ndarray, unreadable
) -> pd.DataFrame:
    """One row per test image (index image_id, columns the task's outputs);
    unreadable images get the folds' mean training target."""
    if len(combined) != len(image_ids):
        raise KitError(f"predict returned {len(combined)} rows for {len(image_ids)} images")
    combined = np.array(combined, dtype=np.float64)
    combined[np.isin(image_ids, list(unreadable))] = folds_training_mean(config, folds)
    return pd.DataFrame(
        combined, index=pd.Index(image_ids, name="image_id"), columns=config.task.outputs
    )


def score_if_labelled(config: Config, final: pd.DataFrame, cuts=None) -> dict | None:
    """The synthetic competitions ship their test labels: score the predictions."""
    from competition.data.labels import read_labels
    from competition.evaluation.scores import score, score_groups
    from competition.synthetic.generate import TEST_LABELS

    path = config.layout.root / TEST_LABELS
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
    preds = write_csv_atomic(
        config.runs.root / "test_preds.csv", table.reset_index(), float_format="%.6g"
    )
    cuts = fold_cuts(config, folds)
    name = sub.submission_name(config.experiment, folds, len(config.predict.tta))
    final, path, rows = checked_submission(config, sample, table, fields, name, cuts)
    written = {"test_preds": str(preds), "submission": str(path), "rows": rows, "cuts": cuts}
    return final, cuts, written


def checked_submission(
    config: Config, sample, table: pd.DataFrame, fields, name: str, cuts=None
) -> tuple[pd.DataFrame, Path, int]:
    """The submission `name` in predict.submissions_dir (and submission.csv)
    from one row of outputs per test image: post-processed, decoded (`cuts`:
    ordinal heads' thresholds), reduced to the sample's rows, checked, written
    atomically. Returns the post-processed outputs, the file, its rows."""
    task = config.task
    final = pd.DataFrame(
        sub.postprocess(task, table.to_numpy()), index=table.index, columns=table.columns
    )
    values = sub.decode(task, final.to_numpy(), final.index, cuts)
    if task.submission.reduce.key:
        values = sub.reduce(values, fields[task.submission.reduce.key], task.submission.reduce.how)
    frame = sub.build_submission(task, sample, values)
    path = sub.write_submission(task, frame, sample, config.predict.submissions_dir, name)
    return final, path, len(frame)


def test_set(config: Config) -> tuple[sub.Sample, list[str], pd.DataFrame | None]:
    """The sample submission, the test images to predict and their path fields."""
    sample = sub.read_sample(config.task, config.layout.sample_submission)
    return (sample, *test_images(config, sample))


def finish(config: Config, folds: list[int], sample, table, fields, summary: dict) -> dict:
    """test_preds.csv, the checked submission, the score when the test set is
    labelled, and predict.json with the summary."""
    final, cuts, written = submit(config, folds, sample, table, fields)
    summary.update(written)
    metric_cuts = cuts.get(config.task.metric_head.name)
    summary["test_score"] = score_if_labelled(config, final, metric_cuts)
    write_text_atomic(config.runs.root / "predict.json", json.dumps(summary, indent=2))
    runs.keep_predictions(config)
    return summary


def write_submission(
    config: Config, test: DataGenerator, predictions: np.ndarray, training_mean: np.ndarray
) -> Path:
    """The checked submission from a plain `model.predict(test)` (`test`:
    competition.pipeline.generators.test_generator's), the rows of images that
    could not be read given `training_mean` (the training targets' mean);
    written as <experiment>-notebook.csv and submission.csv."""
    predictions = test.fill_unreadable(np.array(predictions, dtype=np.float64), training_mean)
    sample, image_ids, fields = test_set(config)
    table = pd.DataFrame(predictions, index=pd.Index(test.ids, name="image_id"))
    table.columns = config.task.outputs
    if list(table.index) != list(image_ids):
        raise KitError(
            f"write_submission takes the predictions of test_generator(config): {len(table)} "
            f"rows for {len(image_ids)} test images, or in another order"
        )
    _, path, _ = checked_submission(
        config, sample, table, fields, f"{config.experiment}-notebook.csv"
    )
    return path


def validate_submission(config: Config, path: str | Path) -> list[str]:
    """What is wrong with a submission file against the sample (empty: Kaggle will score it)."""
    problems, _ = sub.validate_file(config.task, path, config.layout.sample_submission)
    return problems
