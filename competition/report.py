"""What a person reads after training: the per-class table and the curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from competition.labels import SUBTYPES


def fold_table(metrics: dict) -> str:
    """Per-class log loss and AUC, then the score against the prevalence baseline."""
    lines = [
        f"Fold {metrics['fold']}: {metrics['images']} validation images",
        f"{'subtype':<18}{'log loss':>10}{'AUC':>8}",
    ]
    for name in SUBTYPES:
        auc = metrics["per_class_auc"][name]
        auc_text = f"{auc:8.3f}" if auc is not None else f"{'n/a':>8}"
        lines.append(f"{name:<18}{metrics['per_class_log_loss'][name]:>10.4f}{auc_text}")
    score, baseline = metrics["weighted_log_loss"], metrics["baseline_weighted_log_loss"]
    lines.append(
        f"weighted log loss {score:.4f} vs prevalence baseline {baseline:.4f} "
        f"(ratio {score / baseline:.3f})"
    )
    return "\n".join(lines)


def save_curves(history_csv: Path, out: Path, monitor: str) -> Path | None:
    """Loss and the competition metric per epoch, training and validation."""
    if not Path(history_csv).exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = pd.read_csv(history_csv)
    metric = monitor.removeprefix("val_")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, name in zip(axes, ("loss", metric), strict=True):
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
