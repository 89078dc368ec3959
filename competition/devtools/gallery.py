"""A picture of a competition's training images as the model is given them:
one image for each label column (or class) of the first head, the first
that has it, and one with none; optionally beside slices of a real series
(README figures)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from competition.data.dicom import load_hu
from competition.data.labels import read_labels
from competition.data.sources import ImageSource
from competition.data.windows import window_stack
from competition.layout import ImagePaths

SHOWN = 256  # rows of each tile
PER_ROW = 6


def pick_examples(config, labels) -> list[tuple[str, str]]:
    """(title, image ID): per column (per class value for a class head) the
    first training image that has it, and the first that has none."""
    head, derived = config.task.heads[0], set(config.task.derived_names)
    picks = []
    if head.kind in ("multiclass", "ordinal"):
        column = head.columns[0]
        for value in head.classes:
            found = labels.index[labels[column] == value]
            if len(found):
                picks.append((f"{column} {value}", found[0]))
        return picks
    columns = [c for c in head.columns if c not in derived]
    picks = [(c, labels.index[labels[c] == 1][0]) for c in columns if labels[c].any()]
    negative = labels.index[(labels[columns] == 0).all(axis=1)]
    if len(negative):
        picks.append(("none", negative[0]))
    return picks


def _display(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[2] == 1 else image[..., :3]


def save_gallery(config, real_dir: Path | None, out: Path) -> Path:
    layout = config.layout
    labels = read_labels(config.task, layout.train_csv)
    spec = config.pixels
    rows, cols = spec.shape
    tile = replace(spec, shape=(SHOWN, max(1, round(SHOWN * cols / rows))))
    source = ImageSource(ImagePaths(layout, "train", labels), tile)
    tiles = [
        (title, _display(source.load(image_id)))
        for title, image_id in pick_examples(config, labels)
    ]
    width = min(len(tiles), PER_ROW)
    if real_dir is not None:  # head-CT slices of a real series, in the config's windows
        real = sorted(Path(real_dir).glob("*.dcm"), key=lambda p: p.name)
        for path in real[:: max(1, len(real) // width)][:width]:
            tiles.append(
                (f"real: {path.stem}", window_stack(load_hu(path), config.preprocess.windows))
            )
    grid_rows = -(-len(tiles) // width)
    fig, axes = plt.subplots(
        grid_rows, width, figsize=(2.3 * width, 2.5 * grid_rows), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, image) in zip(axes.flat, tiles, strict=False):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(title, fontsize=7)
    fig.suptitle(
        f"{config.task.name}: training images as the model gets them ({spec.mode})", fontsize=9
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
