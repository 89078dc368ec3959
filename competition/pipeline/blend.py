"""`make blend EXPERIMENTS=a,b,c`: experiments of one task, on the same data
and folds, blended on their out-of-fold predictions (competition.stacking.blend)
into runs/<name>/: blend.json (the weights and the post-processing fitted on
every out-of-fold row, the honest CV beside the optimistic one, each
experiment alone), oof.csv + store.json (the honest blended out-of-fold
rows: a blend is an experiment a stack or another blend can take),
test_preds.csv and the checked submission."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from competition.config import Config
from competition.errors import KitError
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.layout import RunLayout
from competition.pipeline import assemble, runs
from competition.stacking import store
from competition.stacking.blend import Blender, honest_cv

BLEND = "blend.json"


def experiment_stores(config: Config, names: list[str], need_test: bool) -> list[store.Stored]:
    """Each named experiment's store, checked to be combinable with the others
    and made for the task of `config` (the first experiment's)."""
    if len(set(names)) != len(names) or not names:
        raise KitError(f"Name each experiment once. Received: {names}")
    fingerprint = runs.data_fingerprint(config.layout)
    found = []
    for name in names:
        layout = RunLayout(config.runs_dir, name)
        _check_same_task(config, layout)
        found.append(store.open_store(layout, config.task.outputs, fingerprint, need_test))
    store.check_combinable(found)
    return found


def _check_same_task(config: Config, layout: RunLayout) -> None:
    """The experiment was trained for the same task as `config`'s."""
    import yaml

    saved = sorted(layout.root.glob("fold*/config.yaml"))
    if not saved:
        return  # a blend's folder: its store was checked when it was made
    theirs = runs.model_settings(yaml.safe_load(saved[0].read_text()))
    ours = runs.model_settings(config.to_dict())
    differ = sorted(
        k
        for k in theirs.keys() & ours.keys()
        if k.startswith(("task.", "folds.")) and theirs[k] != ours[k]
    )
    if differ:
        raise KitError(
            f"Experiment {layout.experiment!r} was trained for another task or folds than "
            f"{config.experiment!r}: "
            + "; ".join(f"{k}: {theirs[k]!r} vs {ours[k]!r}" for k in differ)
        )


def _groups(stored: store.Stored):
    return stored.oof["group"].astype(str).to_numpy() if "group" in stored.oof else None


def blend_experiments(config: Config, names: list[str], name: str | None = None) -> dict:
    """Fit the blend on the experiments' out-of-fold predictions, report its
    honest and optimistic CV, and write its test predictions and submission."""
    stores = experiment_stores(config, names, need_test=True)
    name = name or "blend-" + "-".join(names)
    out = RunLayout(config.runs_dir, name[:128]).root
    first = stores[0]
    truth, folds, groups = first.truth(), first.oof["fold"].to_numpy(), _groups(first)
    stack = np.stack([s.predictions() for s in stores])
    blender, honest, post_kept = _with_or_without_post(config, truth, stack, folds, groups)
    fitted = blender.fit(truth, stack, groups)
    optimistic = blender.apply(stack, fitted)
    alone = {
        s.experiment: {
            "raw": blender.metric(truth, s.predictions(), groups),
            "honest": honest_cv(blender, truth, stack[k : k + 1], folds, groups)["score"],
        }
        for k, s in enumerate(stores)
    }
    report = {
        "blend": name,
        "experiments": names,
        "metric": config.task.metric.name,
        "lower_is_better": config.task.lower_is_better,
        "rank_average": blender.rank,
        "post_processing_kept": post_kept,
        "metric_has_post_processing": blender.metric_has_post,
        **fitted.to_dict(names),
        "cv_honest": honest["score"],
        "cv_optimistic": blender.score_fitted(truth, optimistic, fitted, groups),
        "alone": alone,
        "per_fold": {str(k): f.to_dict(names) for k, f in honest["per_fold"].items()},
    }
    report.update(_blend_test(config, stores, blender, fitted, out, name))
    _write_blend_store(out, first, honest["predictions"], names, name)
    write_text_atomic(out / BLEND, json.dumps(report, indent=2))
    return report


def _with_or_without_post(config: Config, truth, stack, folds, groups):
    """The blender whose honest CV is better: with the metric's post-processing
    fitted, or without it (on a calibrated blend a fitted temperature is noise)."""
    trials = [Blender(config.task, post=post) for post in (True, False)]
    if not trials[0].metric_has_post:  # nothing to fit: one blender, one honest CV
        return trials[1], honest_cv(trials[1], truth, stack, folds, groups), False
    found = [honest_cv(b, truth, stack, folds, groups) for b in trials]
    scores = [f["score"] for f in found]
    sign = 1 if config.task.lower_is_better else -1
    best = 0 if sign * scores[0] <= sign * scores[1] else 1
    return trials[best], found[best], best == 0


def _write_blend_store(out, first: store.Stored, predictions, names, name) -> None:
    """The honest blended rows in an experiment's store format."""
    oof = first.oof.copy()
    oof[[f"pred_{o}" for o in first.outputs]] = predictions
    write_csv_atomic(out / store.POOLED, oof, float_format="%.7g")
    record = {**first.record, "experiment": name, "blend_of": names, "test": store.TEST}
    write_text_atomic(out / store.STORE, json.dumps(record, indent=2))


def _blend_test(config: Config, stores, blender: Blender, fitted, out, name: str) -> dict:
    """The fitted blend over the experiments' test predictions: test_preds.csv
    and the checked submission (and its score when the test set is labelled)."""
    sample, image_ids, fields = assemble.test_set(config)
    tables = []
    for s in stores:
        missing = sorted(set(image_ids) - set(s.test.index))
        if missing:
            raise KitError(
                f"Experiment {s.experiment!r}'s test predictions lack {len(missing)} of the "
                f"{len(image_ids)} test IDs (first: {missing[0]!r}). Predict it again: "
                f"make predict EXPERIMENT={s.experiment}"
            )
        tables.append(s.test.loc[image_ids, config.task.outputs].to_numpy(np.float64))
    blended = blender.apply(np.stack(tables), fitted)
    table = pd.DataFrame(
        blended, index=pd.Index(image_ids, name="image_id"), columns=config.task.outputs
    )
    write_csv_atomic(out / store.TEST, table.reset_index(), float_format="%.7g")
    final, path, rows = assemble.checked_submission(
        config, sample, table, fields, f"{name}.csv", fitted.cuts_by_head(config.task)
    )
    return {
        "submission": str(path),
        "rows": rows,
        "test_score": assemble.score_if_labelled(config, final, fitted.post.get("cuts")),
    }


def markdown(report: dict) -> str:
    """The blend beside each experiment alone, honest and optimistic."""
    from competition.evaluation.scores import number

    lines = [
        f"### Blend {report['blend']} ({report['metric']}"
        f"{', rank average' if report['rank_average'] else ''})",
        "",
        "| | weight | CV (raw) | honest CV |",
        "|---|---:|---:|---:|",
    ]
    for name, found in report["alone"].items():
        lines.append(
            f"| {name} | {report['weights'][name]:.3f} | {number(found['raw'])} "
            f"| {number(found['honest'])} |"
        )
    lines.append(
        f"| **blend** | | {number(report['cv_optimistic'])} (optimistic) "
        f"| **{number(report['cv_honest'])}** |"
    )
    post = {k: v for k, v in report.items() if k in ("kind", "temperature", "clip", "threshold")}
    if report["post_processing_kept"]:
        lines += ["", f"Post-processing: {post} (kept: the honest CV is better with it)"]
    elif report["metric_has_post_processing"]:
        lines += ["", "Post-processing: none (the honest CV was better without it)"]
    if report.get("test_score"):
        lines.append(f"Test score: {number(report['test_score']['score'])}")
    return "\n".join(lines) + "\n"
