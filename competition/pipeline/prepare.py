"""The data steps a training run needs, in order, each skipped when its
output is current: synthetic data (when the config generates it), the
header index, the folds, and the training cache when data.build_cache asks."""

from __future__ import annotations

from pathlib import Path

import yaml

from competition.config import Config
from competition.layout import Layout
from competition.synthetic import generate

# The config values folds.csv is made from: other values leave it current.
FOLD_INPUTS = (
    "folds",
    "task.labels",
    "task.grouping",
    "task.unit",
    "task.stratify",
    "task.heads",
    "task.images.path",
    "task.images.train_dir",
)


def config_value(tree: dict, dotted: str):
    """tree['a']['b'] for 'a.b' (None where a level is missing)."""
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def folds_are_current(layout: Layout, config: Config) -> bool:
    saved = layout.folds_csv.with_suffix(".config.yaml")
    if not (layout.folds_csv.exists() and saved.exists()):
        return False
    before, now = yaml.safe_load(saved.read_text()) or {}, config.to_dict()
    return all(config_value(before, key) == config_value(now, key) for key in FOLD_INPUTS)


def ensure_synthetic(config: Config) -> None:
    """Write the synthetic competition when the config generates one and it is stale."""
    if config.synth.generate and not generate.is_up_to_date(config.layout.root, config.synth):
        write_synthetic(config)


def write_synthetic(config: Config, workers: int | None = None, force: bool = False) -> Path:
    """The config's synthetic competition at data.root (skipped when up to
    date), with the config that wrote it beside it."""
    root = generate.generate(
        config.synth, config.layout, workers or config.data.workers, force=force
    )
    config.save(root / "synthetic.config.yaml")
    return root


def ensure_index(config: Config) -> Layout:
    """Synthetic data (when generated) and the header index, when missing
    or when files were added to or removed from the image folders since."""
    from competition.data.index import folder_changes, write_index

    layout = config.layout
    ensure_synthetic(config)
    changes = folder_changes(layout) if layout.index_csv.exists() else []
    if changes:
        print(
            f"The image folders changed since {layout.index_csv} was written "
            f"({'; '.join(changes)}): indexing them again, then the folds."
        )
    if changes or not layout.index_csv.exists():
        write_index(layout, config.data.workers)
        config.save(layout.index_csv.with_suffix(".config.yaml"))
    return layout


def index_is_newer(layout: Layout) -> bool:
    """folds.csv was made from an older index (the folders changed since)."""
    return layout.index_csv.stat().st_mtime_ns > layout.folds_csv.stat().st_mtime_ns


def write_folds_for(config: Config, layout: Layout) -> None:
    """folds.csv (and the images left out) from the labels and the index."""
    from competition.data.folds import write_folds
    from competition.data.index import read_index
    from competition.data.labels import read_labels
    from competition.data.units import sample_index

    labels = read_labels(config.task, layout.train_csv)
    samples = sample_index(config.task, read_index(layout), layout.root)
    write_folds(layout, labels, samples, config.folds)
    config.save(layout.folds_csv.with_suffix(".config.yaml"))


def ensure_data(config: Config) -> Layout:
    """Everything training needs: data, index, folds current for the config."""
    layout = ensure_index(config)
    if not folds_are_current(layout, config) or index_is_newer(layout):
        write_folds_for(config, layout)
    if config.data.build_cache and config.data.source != "files":
        from competition.data.cache.build import build

        build(config.cache, ["train"], config.data.workers)  # "up to date" costs a file read
    return layout
