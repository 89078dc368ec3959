"""`augment-preview`: a PNG grid of training images as the model sees them
after the configured augmentation, a few images (one per label column or
class, and one with none, up to `images`) by several draws, each titled with its labels
after mixing. The draws go through the training path itself: the host
flips of the DataGenerator, the in-graph layers with training=True, then
MixUp/CutMix on the batch.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from competition.augment.spec import placement
from competition.data.labels import read_labels
from competition.data.sources import open_source
from competition.devtools.gallery import pick_examples
from competition.fileio import atomic_path


def shown(image: np.ndarray) -> np.ndarray:
    """An image to draw: gray, RGB, or a 2.5D stack's middle slice (its
    3 windows) when the channels come in threes."""
    image = np.clip(image, 0, 255).astype(np.uint8)
    channels = image.shape[-1]
    if channels == 1:
        return image[..., 0]
    if channels == 3 or channels % 3:
        return image[..., :3] if channels >= 3 else image[..., 0]
    middle = channels // 3 // 2
    return image[..., 3 * middle : 3 * middle + 3]


def label_text(config, y: np.ndarray) -> str:
    """The labels of one drawn image: the outputs above 0.01 with their weights."""
    parts = [f"{name} {v:.2f}" for name, v in zip(config.task.outputs, y, strict=True) if v > 0.01]
    return ", ".join(parts[:2]) + (" ..." if len(parts) > 2 else "") or "none"


def draws(config, images: np.ndarray, labels: np.ndarray, count: int, seed: int):
    """`count` augmented copies of the batch: [(images, labels)], as training makes them."""
    from competition.augment.flips import flip_batch
    from competition.augment.layers import augmenter, mix, mixers

    where = placement(config.augment)
    layers, mixing = augmenter(config.augment, seed), mixers(config.augment, seed)
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(count):
        x = flip_batch(images.copy(), rng, where.host_flips).astype(np.float32)
        if layers is not None:
            x = layers(x, training=True)
        y = labels
        if mixing:
            x, y = mix(mixing, x, y)
        found.append((np.asarray(x), np.asarray(y)))
    return found


def save_preview(config, out: Path, count: int = 4, seed: int = 0, images: int = 5) -> Path:
    table = read_labels(config.task, config.layout.train_csv)
    picks = pick_examples(config, table)[:images]
    ids = [image_id for _, image_id in picks]
    source = open_source(config.inputs, "train", fields=table)
    loaded = np.stack([source.load(i) for i in ids])
    labels = config.task.targets(table.loc[ids].reset_index(drop=True))
    made = draws(config, loaded, labels, count, seed)
    fig, axes = plt.subplots(
        len(ids), count + 1, figsize=(2.2 * (count + 1), 2.4 * len(ids)), squeeze=False
    )
    for row, image_id in enumerate(ids):
        tiles = [(f"{image_id}\n{label_text(config, labels[row])}", loaded[row])]
        tiles += [(label_text(config, y[row]), x[row]) for x, y in made]
        for ax, (title, image) in zip(axes[row], tiles, strict=True):
            picture = shown(image)
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(title, fontsize=5.5)
            ax.axis("off")
    steps = ", ".join(name for item in config.augment for name in item) or "none"
    fig.suptitle(f"{config.task.name}: as loaded, then {count} draws of: {steps}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out
