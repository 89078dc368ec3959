"""A picture of windowed slices: a training slice positive for each label
column of the first head beside real slices, so one can see what the
synthetic stand-in looks like (README figure)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from competition.data.dicom import load_hu
from competition.data.labels import read_labels
from competition.data.windows import window_stack
from competition.layout import Layout


def pick_synthetic(layout: Layout) -> list[tuple[str, Path]]:
    """One training slice per label column of the first head that has a
    positive (the first listed), and one negative for every column."""
    labels = read_labels(layout.task, layout.train_csv)
    columns = [c for c in layout.task.heads[0].columns if c not in layout.task.derived_names]
    picks = [(c, labels.index[labels[c] == 1][0]) for c in columns if labels[c].any()]
    negative = labels.index[(labels[columns] == 0).all(axis=1)]
    if len(negative):
        picks.append(("negative", negative[0]))
    return [(title, layout.image_path("train", image_id)) for title, image_id in picks]


def save_gallery(layout: Layout, real_dir: Path | None, out: Path, windows) -> Path:
    tiles = [(f"synthetic: {t}", p) for t, p in pick_synthetic(layout)]
    cols = len(tiles)  # one row of synthetic slices, then as many real ones
    if real_dir is not None:
        real = sorted(Path(real_dir).glob("*.dcm"), key=lambda p: p.name)
        tiles += [(f"real: {p.stem}", p) for p in real[:: max(1, len(real) // cols)][:cols]]
    rows = -(-len(tiles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, path) in zip(axes.flat, tiles, strict=False):
        ax.imshow(window_stack(load_hu(path), windows))
        ax.set_title(title, fontsize=7)
    shown = ", ".join(f"{c:g}/{w:g}" for c, w in windows)
    fig.suptitle(f"Windows (center/width) as channels: {shown}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
