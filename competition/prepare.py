"""The data steps a training run needs, in order, each skipped when its
output is current: synthetic data (when the config generates it), the
header index, the folds."""

from __future__ import annotations

from pathlib import Path

import yaml

from competition.config import Config
from competition.layout import Layout


def folds_are_current(layout: Layout, config: Config) -> bool:
    saved = layout.folds_csv.with_suffix(".config.yaml")
    if not (layout.folds_csv.exists() and saved.exists()):
        return False
    return yaml.safe_load(saved.read_text()).get("folds") == config.to_dict()["folds"]


def ensure_synthetic(config: Config) -> None:
    """Write the synthetic competition when the config generates one and it is stale."""
    from competition import synthetic

    if config.synth.generate and not synthetic.is_up_to_date(Path(config.data.root), config.synth):
        synthetic.generate(config)


def ensure_index(config: Config) -> Layout:
    """Synthetic data (when generated) and the header index, when missing."""
    from competition.index import write_index

    layout = Layout.from_config(config)
    ensure_synthetic(config)
    if not layout.index_csv.exists():
        write_index(layout, config.data.workers)
        config.save(layout.index_csv.with_suffix(".config.yaml"))
    return layout


def ensure_data(config: Config) -> Layout:
    """Everything training needs: data, index, folds current for the config."""
    from competition.folds import write_folds
    from competition.index import read_index
    from competition.labels import read_labels

    layout = ensure_index(config)
    if not folds_are_current(layout, config):
        write_folds(layout, read_labels(layout.train_csv), read_index(layout), config.folds)
        config.save(layout.folds_csv.with_suffix(".config.yaml"))
    return layout
