"""The cross-validation report: every trained fold's out-of-fold predictions,
scored per fold and pooled, written to runs/<experiment>/cv.json, cv.md and
roc.png (one ROC curve per probability output)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import KitError
from competition.evaluation.report import ratio
from competition.evaluation.scores import number, probability_outputs, score
from competition.fileio import atomic_path, write_text_atomic
from competition.layout import RunLayout
from competition.task import TaskSpec


def read_oof(runs: RunLayout, stage: int = 1) -> dict[int, pd.DataFrame]:
    """fold -> its out-of-fold table, for every fold folder that has one
    (stage 2: fold<k>/sequence/oof.csv)."""
    found = {}
    pattern = "fold*/oof.csv" if stage == 1 else "fold*/sequence/oof.csv"
    for path in sorted(runs.root.glob(pattern)):
        fold_folder = path.parent if stage == 1 else path.parent.parent
        suffix = fold_folder.name.removeprefix("fold")
        if suffix.isdigit():
            found[int(suffix)] = pd.read_csv(path, dtype={"image_id": str})
    if not found and stage == 1:
        raise KitError(
            f"No out-of-fold predictions in {runs.root} (fold<k>/oof.csv). "
            "Train a fold first: make train FOLD=0"
        )
    return dict(sorted(found.items()))


def scored(task: TaskSpec, oof: pd.DataFrame) -> dict:
    """An oof table scored (per group when it has a `group` column)."""
    truth = oof[[f"label_{name}" for name in task.outputs]].to_numpy(np.float64)
    predictions = oof[[f"pred_{name}" for name in task.outputs]].to_numpy(np.float64)
    groups = oof["group"].astype(str).to_numpy() if "group" in oof else None
    return score(task, truth, predictions, groups=groups)


def cv_report(task: TaskSpec, runs: RunLayout) -> dict:
    """Scores per fold and over all out-of-fold rows; writes cv.json, cv.md, roc.png."""
    folds = read_oof(runs)
    pooled = pd.concat(folds.values(), ignore_index=True)
    report = {
        "experiment": runs.experiment,
        "metric": task.metric.name,
        "folds": {str(k): scored(task, frame) for k, frame in folds.items()},
        "overall": scored(task, pooled),
    }
    second = read_oof(runs, stage=2)
    if second:
        report["stages"] = stages_side_by_side(task, folds, second)
    out = runs.root
    write_text_atomic(out / "cv.json", json.dumps(report, indent=2))
    write_text_atomic(out / "cv.md", markdown(report))
    save_roc(task, pooled, out / "roc.png")
    return report


def stages_side_by_side(task: TaskSpec, first: dict, second: dict) -> dict:
    """Stage 1 and stage 2 on the folds that have both, per fold and pooled."""
    common = [k for k in second if k in first]
    both = {
        str(k): {"stage1": scored(task, first[k]), "stage2": scored(task, second[k])}
        for k in common
    }
    pooled = {
        f"stage{n}": scored(task, pd.concat([frames[k] for k in common], ignore_index=True))
        for n, frames in ((1, first), (2, second))
    }
    return {"folds": both, "overall": pooled}


def _stages_markdown(stages: dict, metric: str) -> list[str]:
    lines = [
        "",
        f"| fold | images | stage 1 {metric} | stage 2 {metric} | change |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, pair in [*stages["folds"].items(), ("all", stages["overall"])]:
        one, two = pair["stage1"], pair["stage2"]
        change = (two["score"] - one["score"]) / abs(one["score"]) if one["score"] else math.nan
        lines.append(
            f"| {name} | {two['images']} | {number(one['score'])} | {number(two['score'])} "
            f"| {change:+.1%} |"
        )
    one, two = stages["overall"]["stage1"]["per_output"], stages["overall"]["stage2"]["per_output"]
    if one:
        lines += [
            "",
            "| output | log loss stage 1 | stage 2 | ROC AUC stage 1 | stage 2 |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in one:
            a, b = one[name], two[name]
            lines.append(
                f"| {name} | {number(a['log_loss'])} | {number(b['log_loss'])} "
                f"| {number(a['auc'], 3)} | {number(b['auc'], 3)} |"
            )
    return lines


def markdown(report: dict) -> str:
    """Two tables: the score per fold, then per output over all folds."""
    lines = [
        f"### Cross-validation: {report['experiment']}",
        "",
        f"| fold | images | {report['metric']} | constant-prediction baseline |",
        "|---|---:|---:|---:|",
    ]
    rows = [*report["folds"].items(), ("all", report["overall"])]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['images']} | {number(s['score'])} "
            f"| {number(s['baseline_score'])}{ratio(s)} |"
        )
    overall = report["overall"]["per_output"]
    if overall:
        lines += ["", "| output | log loss | ROC AUC |", "|---|---:|---:|"]
        for name, found in overall.items():
            lines.append(f"| {name} | {number(found['log_loss'])} | {number(found['auc'], 3)} |")
    if "stages" in report:
        lines += ["", "#### Stage 1 (CNN) and stage 2 (sequence model), same folds"]
        lines += _stages_markdown(report["stages"], report["metric"])
    return "\n".join(lines) + "\n"


def save_roc(task: TaskSpec, oof: pd.DataFrame, out: Path) -> Path | None:
    """One ROC curve per probability output, pooled over the folds."""
    columns = [task.outputs[i] for i in probability_outputs(task)]
    if not columns:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc, roc_curve

    cols = min(len(columns), 4)
    rows = math.ceil(len(columns) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols, 3.3 * rows), squeeze=False, sharex=True, sharey=True
    )
    for ax in axes.flat[len(columns) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, columns, strict=False):
        truth, pred = oof[f"label_{name}"], oof[f"pred_{name}"]
        ax.plot([0, 1], [0, 1], ":", color="grey")
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = roc_curve(truth, pred)
            ax.plot(fpr, tpr)
            ax.set_title(f"{name} (AUC {auc(fpr, tpr):.3f})", fontsize=9)
        else:
            ax.text(0.5, 0.5, "one class only", ha="center")
            ax.set_title(name, fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("false positive rate")
    for ax in axes[:, 0]:
        ax.set_ylabel("true positive rate")
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return out
