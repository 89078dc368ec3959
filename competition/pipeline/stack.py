"""`make stack`: the stacking stage (the `stack:` section) over an
experiment's data: gradient-boosted trees (competition.stacking.gbm) on the
tabular columns, the patient-relative features and the stack.experiments'
out-of-fold predictions (competition.stacking.features), on the same
patient-grouped folds, into runs/<experiment>/<stack.name>/: the boosters,
oof.csv, test_preds.csv, stack.json (its CV per fold and pooled beside each
image model's on the same rows, the features and their gain, the missing
values) and the checked submission. Resumable: finished boosters are kept,
and reused only while the settings and inputs that made them are unchanged."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pandas as pd

from competition.config import Config
from competition.data.folds import read_folds
from competition.data.labels import read_labels
from competition.errors import ConfigError, KitError
from competition.evaluation.scores import number, score
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.pipeline import assemble, runs
from competition.pipeline.blend import experiment_stores
from competition.stacking import features as feats
from competition.stacking import gbm
from competition.workers import worker_count

SETTINGS = "settings.json"
FEATURES = "features.json"
TOP_GAIN_SHOWN = 5  # features named in the printed summary


def _check_task(config: Config) -> None:
    kinds = {head.kind for head in config.task.heads}
    if not kinds <= {"binary", "multilabel"}:
        raise ConfigError(
            f"make stack boosts one sigmoid output at a time: binary or multilabel heads. "
            f"Task {config.task.name!r} has {sorted(kinds)} heads."
        )


def _read_table(path, id_field: str, key: str | None) -> pd.DataFrame:
    text = {id_field: str, **({key: str} if key else {})}
    return (
        pd.read_csv(path, dtype=text, low_memory=False)
        .drop_duplicates(id_field)
        .set_index(id_field)
    )


def _patient_key(config: Config) -> str | None:
    return config.task.grouping.key if config.task.grouping.by == "column" else None


def test_csv_rows(config: Config, test_ids: list[str]) -> pd.DataFrame:
    """The test CSV's rows of `test_ids` (no columns when there is no test CSV)."""
    task, layout = config.task, config.layout
    test_csv = layout.test_csv if task.images.test_csv else None
    if not (test_csv and test_csv.is_file()):
        return pd.DataFrame(index=pd.Index(test_ids))
    test = _read_table(test_csv, task.id_field, _patient_key(config))
    missing = pd.Index(test_ids).difference(test.index)
    if len(missing):
        raise KitError(f"{test_csv} has no row for {len(missing)} test IDs (first: {missing[0]!r})")
    return test.reindex(test_ids)


def _train_table(config: Config, train_ids: list[str]) -> pd.DataFrame:
    """The label CSV's rows (a long label CSV holds no per-image columns)."""
    task = config.task
    if task.labels.format != "wide":
        return pd.DataFrame(index=pd.Index(train_ids))
    table = _read_table(config.layout.train_csv, task.id_field, _patient_key(config))
    return table.reindex(train_ids)


def _reserved(config: Config) -> set[str]:
    task = config.task
    return {
        task.id_field,
        *task.label_columns,
        *task.derived_names,
        task.grouping.key or "",
        task.stratify or "",
    }


def _inputs_record(config: Config, stores, columns: list[str]) -> dict:
    """What made the boosters: the stack settings, the columns, the data,
    the experiments' out-of-fold digests."""
    return {
        "stack": {k: v for k, v in config.to_dict()["stack"].items() if k != "name"},
        "columns": columns,
        "data_fingerprint": runs.data_fingerprint(config.layout),
        "experiments": {s.experiment: s.record["folds_digest"] for s in stores},
        "seed": config.seed,
    }


def _prepare_folder(config: Config, record: dict, force: bool):
    out = config.runs.root / config.stack.name
    saved = out / SETTINGS
    if saved.is_file() and not force:
        before = json.loads(saved.read_text())
        differ = sorted(k for k in record if before.get(k) != record[k])
        if differ:
            raise KitError(
                f"{out} holds boosters made from other inputs ({', '.join(differ)} differ). "
                "Run make stack ARGS=--force to train them again, or give this stack another "
                "name (--set stack.name=NAME)."
            )
    elif force:
        shutil.rmtree(out, ignore_errors=True)
    write_text_atomic(saved, json.dumps(record, indent=2))
    return out


def stack_stage(config: Config, force: bool = False) -> dict:
    """Train (or resume) the stack, write its predictions, report and submission."""
    started = time.perf_counter()
    _check_task(config)
    task, stack = config.task, config.stack
    folds = read_folds(config.layout)
    missing_folds = sorted(set(range(config.folds.k)) - set(folds["fold"]))
    if missing_folds:
        raise KitError(f"{config.layout.folds_csv} lacks folds {missing_folds}: make folds")
    labels = read_labels(task, config.layout.train_csv)
    rows = folds[["image_id", "fold"]].join(labels, on="image_id").reset_index(drop=True)
    train_ids = rows["image_id"].tolist()
    sample, test_ids, fields = assemble.test_set(config)
    stores = experiment_stores(config, stack.experiments, True) if stack.experiments else []
    for stored in stores:
        if stored.record["folds"] != list(range(config.folds.k)):
            raise KitError(
                f"Experiment {stored.experiment!r} has out-of-fold predictions for folds "
                f"{stored.record['folds']}; a stack needs every fold (0-{config.folds.k - 1}): "
                f"make train FOLD=all EXPERIMENT=... with its config"
            )
    train_rows, test_rows = _train_table(config, train_ids), test_csv_rows(config, test_ids)
    key = _patient_key(config)
    columns = feats.tabular_columns(
        train_rows, test_rows, _reserved(config), stack.columns, stack.exclude
    )
    predictions = None
    if stores:
        predictions = (
            feats.oof_columns(stores, train_ids),
            feats.prediction_columns([(s.experiment, s.test) for s in stores], test_ids),
        )
    if not columns and not stores:
        raise ConfigError(
            "The stack has no features: no tabular column shared by the label CSV and the test "
            "CSV (stack.columns) and no experiment (stack.experiments)."
        )
    built = feats.build(train_rows, test_rows, columns, key, predictions, stack.relative)
    out = _prepare_folder(config, _inputs_record(config, stores, columns), force)
    _write_features_record(out, config, built, columns, stores)
    targets = task.targets(rows)
    oof, gain = gbm.fit_out_of_fold(
        built.train, targets, rows["fold"].to_numpy(), task.outputs, stack, config.seed,
        worker_count(config.data.workers), out,
    )  # fmt: skip
    test_pred = predict_test(config, out, test_ids, {s.experiment: s.test for s in stores})
    report = _report(
        config, out, rows, targets, oof, test_pred, test_ids, stores, built, gain, (sample, fields)
    )
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_text_atomic(out / "stack.json", json.dumps(report, indent=2))
    return report


def _write_features_record(out, config: Config, built, columns: list[str], stores) -> None:
    """features.json: what the test rows' features are made of (the kernel
    builds them from it, with no label CSV and no out-of-fold rows)."""
    record = {
        "columns": columns,
        "numeric": [c for c in columns if feats.plain(c) in built.numeric],
        "categorical": [c for c in columns if feats.plain(c) in built.categorical],
        "relative": config.stack.relative,
        "experiments": [s.experiment for s in stores],
        "outputs": config.task.outputs,
        "folds": list(range(config.folds.k)),
        "seeds": config.stack.seeds,
        "feature_names": list(built.train.columns),
    }
    write_text_atomic(out / FEATURES, json.dumps(record, indent=2))


def predict_test(config: Config, folder, test_ids: list[str], tests: dict) -> np.ndarray:
    """The saved boosters' mean prediction for the test rows: their test CSV
    columns and `tests` (experiment -> its test predictions, indexed by ID),
    built as features.json says. make stack and the Kaggle kernel both call it."""
    record = json.loads((folder / FEATURES).read_text())
    rows = test_csv_rows(config, test_ids)
    encoded = feats.encode(rows, record["numeric"], record["categorical"])
    predictions = None
    if record["experiments"]:
        predictions = feats.prediction_columns(
            [(name, tests[name]) for name in record["experiments"]], test_ids
        )
    built = feats.with_predictions_and_relative(
        encoded, rows, _patient_key(config), predictions, record["numeric"], record["relative"]
    )
    if list(built.columns) != record["feature_names"]:
        raise KitError(
            f"The test features differ from those the boosters in {folder} were trained on: "
            f"{sorted(set(built.columns) ^ set(record['feature_names']))[:5]}"
        )
    return gbm.predict_saved(folder, built, record["outputs"], record["folds"], record["seeds"])


def _scores(config: Config, rows, targets, predictions) -> dict:
    folds = rows["fold"].to_numpy()
    per_fold = {
        str(k): score(config.task, targets[folds == k], predictions[folds == k])["score"]
        for k in np.unique(folds)
    }
    return {"folds": per_fold, "overall": score(config.task, targets, predictions)["score"]}


def _report(config, out, rows, targets, oof, test_pred, test_ids, stores, built, gain, test):
    task = config.task
    table = rows[["image_id", "fold"]].copy()
    table[[f"pred_{o}" for o in task.outputs]] = oof
    table[[f"label_{o}" for o in task.outputs]] = targets
    write_csv_atomic(out / "oof.csv", table, float_format="%.7g")
    predicted = pd.DataFrame(
        test_pred, index=pd.Index(test_ids, name="image_id"), columns=task.outputs
    )
    write_csv_atomic(out / "test_preds.csv", predicted.reset_index(), float_format="%.7g")
    sample, fields = test
    name = f"{config.experiment}-{config.stack.name}.csv"
    final, path, count = assemble.checked_submission(config, sample, predicted, fields, name)
    experiments = {}
    for stored in stores:
        mine = stored.oof.set_index("image_id").loc[rows["image_id"]]
        experiments[stored.experiment] = _scores(
            config, rows, targets, mine[[f"pred_{o}" for o in task.outputs]].to_numpy()
        )
    report = {
        "experiment": config.experiment,
        "stack": config.stack.name,
        "metric": task.metric.name,
        "cv": _scores(config, rows, targets, oof),
        "experiments": experiments,
        "features": {
            "numeric": built.numeric,
            "categorical": built.categorical,
            "all": list(built.train.columns),
        },
        "missing_values": built.missing,
        "top_gain": {k: round(float(v), 1) for k, v in list(gain.items())[:20]},
        "submission": str(path),
        "rows": count,
        "test_score": assemble.score_if_labelled(config, final),
    }
    return report


def markdown(report: dict) -> str:
    """The stack's CV beside each image model's, per fold and pooled."""
    names = list(report["experiments"])
    lines = [
        f"### Stack {report['experiment']}/{report['stack']} ({report['metric']})",
        "",
        "| fold | " + " | ".join([*names, "stack"]) + " |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for fold in [*report["cv"]["folds"], "all"]:
        scores = [report["experiments"][n] for n in names] + [report["cv"]]
        cells = [number(s["overall"] if fold == "all" else s["folds"][fold]) for s in scores]
        lines.append(f"| {fold} | " + " | ".join(cells) + " |")
    features = report["features"]
    lines += [
        "",
        f"Features: {len(features['all'])} ({len(features['numeric'])} numeric and "
        f"{len(features['categorical'])} categorical columns, the rest patient-relative and "
        "predictions); most gain: " + ", ".join(list(report["top_gain"])[:TOP_GAIN_SHOWN]),
    ]
    if report["missing_values"]:
        lines.append(f"Missing values (kept missing): {report['missing_values']}")
    if report.get("test_score"):
        lines.append(f"Test score: {number(report['test_score']['score'])}")
    return "\n".join(lines) + "\n"
