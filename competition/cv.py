"""The cross-validation report: every trained fold's out-of-fold predictions,
scored per fold and pooled, written to runs/<experiment>/cv.json, cv.md and
roc.png (one ROC curve per class)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import Config
from competition.errors import KitError
from competition.fileio import atomic_path, write_text_atomic
from competition.labels import SUBTYPES
from competition.layout import run_dir
from competition.metrics import per_class_auc, per_class_log_loss, weighted_log_loss

PRED = [f"pred_{name}" for name in SUBTYPES]
LABEL = [f"label_{name}" for name in SUBTYPES]


class ReportError(KitError, ValueError):
    """No out-of-fold predictions to report on."""


def read_oof(config: Config) -> dict[int, pd.DataFrame]:
    """fold -> its oof.csv, for every fold folder that has one."""
    found = {}
    for path in sorted(run_dir(config).glob("fold*/oof.csv")):
        suffix = path.parent.name.removeprefix("fold")
        if suffix.isdigit():
            found[int(suffix)] = pd.read_csv(path)
    if not found:
        raise ReportError(
            f"No out-of-fold predictions in {run_dir(config)} (fold<k>/oof.csv). "
            "Train a fold first: make train FOLD=0"
        )
    return dict(sorted(found.items()))


def score(oof: pd.DataFrame) -> dict:
    truth, pred = oof[LABEL].to_numpy(np.float64), oof[PRED].to_numpy(np.float64)
    constant = np.broadcast_to(truth.mean(axis=0), truth.shape)
    return {
        "images": len(oof),
        "weighted_log_loss": weighted_log_loss(truth, pred),
        "constant_prevalence_log_loss": weighted_log_loss(truth, constant),
        "per_class_log_loss": per_class_log_loss(truth, pred),
        "per_class_auc": per_class_auc(truth, pred),
    }


def cv_report(config: Config) -> dict:
    """Scores per fold and over all out-of-fold rows; writes cv.json, cv.md, roc.png."""
    folds = read_oof(config)
    pooled = pd.concat(folds.values(), ignore_index=True)
    report = {
        "experiment": config.experiment,
        "folds": {str(k): score(frame) for k, frame in folds.items()},
        "overall": score(pooled),
    }
    out = run_dir(config)
    write_text_atomic(out / "cv.json", json.dumps(report, indent=2))
    write_text_atomic(out / "cv.md", markdown(report))
    save_roc(pooled, out / "roc.png")
    return report


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    """Two tables: the score per fold, then per class over all folds."""
    lines = [
        f"### Cross-validation: {report['experiment']}",
        "",
        "| fold | images | weighted log loss | constant-prevalence log loss |",
        "|---|---:|---:|---:|",
    ]
    rows = [*report["folds"].items(), ("all", report["overall"])]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['images']} | {_number(s['weighted_log_loss'])} "
            f"| {_number(s['constant_prevalence_log_loss'])} |"
        )
    overall = report["overall"]
    lines += ["", "| class | log loss | ROC AUC |", "|---|---:|---:|"]
    for name in SUBTYPES:
        lines.append(
            f"| {name} | {_number(overall['per_class_log_loss'][name])} "
            f"| {_number(overall['per_class_auc'][name], 3)} |"
        )
    return "\n".join(lines) + "\n"


def save_roc(oof: pd.DataFrame, out: Path) -> Path:
    """One ROC curve per class, pooled over the folds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc, roc_curve

    fig, axes = plt.subplots(2, 3, figsize=(10, 6.6), sharex=True, sharey=True)
    for ax, name in zip(axes.flat, SUBTYPES, strict=True):
        truth, pred = oof[f"label_{name}"], oof[f"pred_{name}"]
        ax.plot([0, 1], [0, 1], ":", color="grey")
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = roc_curve(truth, pred)
            ax.plot(fpr, tpr)
            ax.set_title(f"{name} (AUC {auc(fpr, tpr):.3f})")
        else:
            ax.text(0.5, 0.5, "one class only", ha="center")
            ax.set_title(name)
    for ax in axes[-1]:
        ax.set_xlabel("false positive rate")
    for ax in axes[:, 0]:
        ax.set_ylabel("true positive rate")
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return out
