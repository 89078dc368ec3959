"""`cluster-train`: one Ray task per (sweep point, fold), each running the
kit's own fold training in its own process; a progress line per finished
fold, then the same CV report as `make train FOLD=all`, and for a sweep a
table ranking its points. Finished folds are skipped (a re-run trains
nothing new); unfinished ones resume from their backups, as on one machine."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from competition.backend import chosen
from competition.cluster import sweep as sweeps
from competition.cluster.session import check_fits, connect
from competition.cluster.storage import check_shared_storage
from competition.config import Config, load_config
from competition.errors import KitError
from competition.pipeline import runs


@dataclass(frozen=True)
class Resources:
    cpus: float = 1
    gpus: float = 1
    max_retries: int = 3


@dataclass(frozen=True)
class Point:
    config: Config
    overrides: list[str]


def sweep_points(config_path: str | None, base: list[str], sweep_file: Path | None) -> list[Point]:
    """The configs to train: the command's, or one per sweep point with its
    own experiment folder."""
    if sweep_file is None:
        return [Point(load_config(config_path, base), [])]
    base_config = load_config(config_path, base)
    points = []
    for point in sweeps.read_sweep(sweep_file):
        extra = sweeps.overrides(point)
        name = sweeps.point_name(base_config.experiment, point)
        config = load_config(config_path, [*base, *extra, f"experiment={name}"])
        points.append(Point(config, extra))
    return points


def finished_metrics(config: Config, fold: int) -> dict | None:
    """The fold's metrics when it finished on the same inputs (what differs
    stops the command, as in `make train`), else None."""
    runs.check_same_inputs(
        config,
        fold,
        "Train it again on one machine with --force, or train this config under another "
        "experiment name (--set experiment=NAME).",
    )
    path = config.runs.fold(fold) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def shared_folders(points: list[Point]) -> list[Path]:
    found = []
    for point in points:
        found += [point.config.layout.root, point.config.runs.runs_dir]
    return found


def submit(ray, points: list[Point], folds: list[int], res: Resources) -> dict:
    """ObjectRef -> (point, fold) for every unfinished fold."""
    from competition.cluster.tasks import train_fold_task

    # max_calls=1: a fresh process per fold, TensorFlow's memory and threads start clean
    task = ray.remote(max_calls=1)(train_fold_task).options(
        num_cpus=res.cpus,
        num_gpus=res.gpus,
        max_retries=res.max_retries,
        name="train_fold",
    )
    pending = {}
    for point in points:
        for fold in folds:
            if finished_metrics(point.config, fold) is not None:
                print(f"{point.config.experiment} fold {fold}: already trained, skipped")
                continue
            ref = task.remote(point.config, fold, os.getcwd(), res.cpus, res.gpus, chosen())
            pending[ref] = (point, fold)
    return pending


def progress_line(result: dict, done: int, total: int) -> str:
    from competition.evaluation.report import headline

    return (
        f"[{done}/{total}] {result['experiment']} fold {result['fold']} finished on node "
        f"{result['node'][:12]} ({result['host']}, attempt {result['attempt']}) in "
        f"{result['seconds']:.0f} s: {headline(result['metrics'])}"
    )


def wait_all(ray, pending: dict) -> tuple[list[dict], list[str]]:
    """Results as they finish, a line each; failures collected, not fatal to the others."""
    results, failures, total = [], [], len(pending)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        point, fold = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # a task that failed after its retries
            failures.append(f"{point.config.experiment} fold {fold}: {_cause(exc)}")
            print(f"[{len(results) + len(failures)}/{total}] FAILED {failures[-1]}")
            continue
        results.append(result)
        print(progress_line(result, len(results) + len(failures), total), flush=True)
    return results, failures


def _cause(exc: Exception) -> str:
    cause = getattr(exc, "cause", None)
    return f"{type(cause).__name__}: {cause}" if cause is not None else f"{exc}"


def cluster_train(
    config_path: str | None,
    base: list[str],
    address: str,
    folds: list[int] | None,
    sweep_file: Path | None,
    res: Resources,
) -> dict:
    """Set up the data, check the shared storage, train on the cluster, report."""
    from competition.pipeline.prepare import ensure_data
    from competition.pipeline.runs import keep_predictions

    points = sweep_points(config_path, base, sweep_file)
    folds = folds if folds is not None else list(range(points[0].config.folds.k))
    for point in points:
        ensure_data(point.config)
    ray = connect(address)
    try:
        check_fits(ray, res.cpus, res.gpus, "a fold")
        check_shared_storage(ray, shared_folders(points))
        started = time.perf_counter()
        pending = submit(ray, points, folds, res)
        results, failures = wait_all(ray, pending)
    finally:
        ray.shutdown()
    for point in points:  # each experiment's out-of-fold store, on the driver
        keep_predictions(point.config)
    summary = {
        "trained": [(r["experiment"], r["fold"]) for r in results],
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
        "points": points,
    }
    if failures:
        raise KitError(
            f"{len(failures)} fold(s) failed after their retries:\n- "
            + "\n- ".join(failures)
            + "\nThe others finished; run the command again to retry the failed ones "
            "(finished folds are skipped, unfinished ones resume from their backups)."
        )
    return summary


def sweep_table(points: list[Point]) -> str:
    """Pooled CV score of each point (from its cv.json), ranked."""
    from competition.evaluation.cv import cv_report

    rows = []
    for point in points:
        report = cv_report(point.config.task, point.config.runs)
        rows.append(
            {
                "experiment": point.config.experiment,
                "overrides": point.overrides,
                "score": report["overall"]["score"],
                "folds": ",".join(report["folds"]),
            }
        )
    task = points[0].config.task
    return sweeps.ranking(rows, task.lower_is_better)
