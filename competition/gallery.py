"""A picture of windowed slices: synthetic slices with each lesion beside
real slices, so one can see what the phantom looks like (README figure)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from competition.dicom import load_hu, window_stack
from competition.labels import LESION_SUBTYPES, read_labels
from competition.layout import Layout


def pick_synthetic(layout: Layout) -> list[tuple[str, Path]]:
    """One training slice per subtype (the first listed) and one without a bleed."""
    labels = read_labels(layout.train_csv)
    picks = [(s, labels.index[labels[s] == 1][0]) for s in LESION_SUBTYPES if labels[s].any()]
    picks.append(("no bleed", labels.index[labels["any"] == 0][0]))
    return [(title, layout.image_path("train", image_id)) for title, image_id in picks]


def save_gallery(layout: Layout, real_dir: Path | None, out: Path, windows) -> Path:
    tiles = [(f"synthetic: {t}", p) for t, p in pick_synthetic(layout)]
    if real_dir is not None:
        real = sorted(Path(real_dir).glob("*.dcm"), key=lambda p: p.name)
        tiles += [(f"real: {p.stem}", p) for p in real[:: max(1, len(real) // 6)][:6]]
    cols = 6
    rows = -(-len(tiles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, path) in zip(axes.flat, tiles, strict=False):
        ax.imshow(window_stack(load_hu(path), windows))
        ax.set_title(title, fontsize=7)
    fig.suptitle("Windows as RGB: brain 40/80, subdural 80/200, soft tissue 40/380", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
