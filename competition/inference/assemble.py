"""From per-image predictions to the checked submission, without TensorFlow
(the cluster's driver uses it too): which test images, the fallback for
unreadable ones, the table, test_preds.csv, the post-processed, decoded and
checked submission, predict.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from competition import runs
from competition.config import Config
from competition.errors import KitError
from competition.evaluation import thresholds
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.inference import submission as sub
from competition.layout import Layout, fold_dir, run_dir


class PredictError(KitError, ValueError):
    """Nothing to predict with, or a checkpoint that does not fit the config."""


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


def fallback_of(config: Config, folds: list[int]) -> dict[str, float]:
    constant = fold_constant(config, folds)
    return dict(zip(config.task.outputs, map(float, constant), strict=True))


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
        raise PredictError(f"predict returned {len(combined)} rows for {len(image_ids)} images")
    combined = np.array(combined, dtype=np.float64)
    combined[np.isin(image_ids, list(unreadable))] = fold_constant(config, folds)
    return pd.DataFrame(
        combined, index=pd.Index(image_ids, name="image_id"), columns=config.task.outputs
    )


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


def finish(config: Config, folds: list[int], sample, table, fields, summary: dict) -> dict:
    """test_preds.csv, the checked submission, the score when the test set is
    labelled, and predict.json with the summary."""
    final, cuts, written = submit(config, folds, sample, table, fields)
    summary.update(written)
    metric_cuts = cuts.get(config.task.metric_head.name)
    summary["test_score"] = score_if_labelled(config, final, metric_cuts)
    write_text_atomic(run_dir(config) / "predict.json", json.dumps(summary, indent=2))
    return summary
