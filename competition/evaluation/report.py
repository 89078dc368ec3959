"""What a person reads after training a fold: the per-output table and the curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from competition.evaluation.scores import number


def ratio(scores: dict) -> str:
    """'ratio 0.318' of score to baseline for metrics where lower is better."""
    score, baseline = scores.get("score"), scores.get("baseline_score")
    if score is None or not baseline or not scores.get("lower_is_better"):
        return ""
    return f" (ratio {score / baseline:.3f})"


def headline(scores: dict) -> str:
    """'weighted_log_loss 0.0835 vs constant-prediction baseline 0.2626 (ratio 0.318)'."""
    return (
        f"{scores['metric']} {number(scores['score'])} vs constant-prediction baseline "
        f"{number(scores['baseline_score'])}{ratio(scores)}"
    )


def fold_table(metrics: dict, noun: str = "images") -> str:
    """Log loss and AUC per probability output, then the metric against the
    baseline (`noun`: what a sample is, task.sample_noun)."""
    outputs = metrics.get("per_output", {})
    width = max([18, *(len(name) + 2 for name in outputs)])
    lines = [
        f"Fold {metrics['fold']}: {metrics['images']} validation {noun}",
        f"{'output':<{width}}{'log loss':>10}{'AUC':>8}",
    ]
    for name, found in outputs.items():
        lines.append(f"{name:<{width}}{found['log_loss']:>10.4f}{number(found['auc'], 3):>8}")
    lines.append(headline(metrics))
    return "\n".join(lines)


def save_curves(history_csv: Path, out: Path, monitor: str) -> Path | None:
    """Loss and the monitored value per epoch, training and validation."""
    if not Path(history_csv).exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = pd.read_csv(history_csv)
    metric = monitor.removeprefix("val_")
    names = list(dict.fromkeys(["loss", metric]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for column, style in ((name, "-o"), (f"val_{name}", "-s")):
            if column in history:
                ax.plot(history["epoch"] + 1, history[column], style, label=column)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
