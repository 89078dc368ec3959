"""What is in an experiment's folder, and what made each fold.

A fold folder holds the resolved `config.yaml` it was trained with and
`inputs.json`: a fingerprint of the data it learned from (the label CSV and
folds.csv, hashed) and where that data was. A finished fold is reused, and
predicted with, only when the current config agrees on everything that
changes the model (the task, preprocessing, folds, augmentation, model,
training, seed) and the data's fingerprint is the same; otherwise the
command stops and names what differs. Settings that change how fast, not
what, are not compared (workers, queue sizes, XLA, the strategy, the
precision: `auto` is a different one per machine, and a fold resumed on
another GPU changes it), nor are
the test-side ones (test files, submission format, prediction settings).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from competition.config import Config
from competition.config.files import upgrade
from competition.errors import KitError
from competition.fileio import write_text_atomic
from competition.layout import Layout

INPUTS = "inputs.json"
# Config sections that decide the trained model...
MODEL_SECTIONS = ("seed", "task", "preprocess", "folds", "augment", "model", "train")
# ...except these keys, which change how fast it trains or what happens at test time.
NOT_THE_MODEL = (
    "task.images.test_dir",
    "task.images.test_list",
    "task.images.test_csv",
    "task.submission",
    "model.safe_mode",
    "train.workers",
    "train.augment_on",
    "train.use_multiprocessing",
    "train.max_queue_size",
    "train.jit_compile",
    "train.mixed_precision",
    "train.strategy",
    "train.steps_per_execution",
)


def select_folds(config: Config, requested: list[int] | None = None) -> list[int]:
    """The folds to ensemble: `requested` (or predict.folds), else every finished one."""
    requested = requested if requested is not None else config.predict.folds
    available = config.runs.finished_folds()
    if not available:
        raise KitError(
            f"No trained fold found in {config.runs.root} (expected fold<k>/best.keras with its "
            f"metrics.json). Train one first: make train FOLD=0 (experiment "
            f"{config.experiment!r})."
        )
    if requested is None:
        return available
    missing = sorted(set(requested) - set(available))
    if missing:
        raise KitError(
            f"Fold(s) {missing} of experiment {config.experiment!r} have not finished training "
            f"in {config.runs.root}. Finished: {available}"
        )
    return sorted(set(requested))


# --- what made a fold -----------------------------------------------------------


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    flat = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat


def model_settings(tree: dict) -> dict:
    """The flat config values that decide the trained model (of a config
    tree as saved, its retired keys translated)."""
    tree = upgrade(tree)
    flat = _flat({s: tree.get(s) for s in MODEL_SECTIONS})
    return {
        k: v
        for k, v in flat.items()
        if not any(k == skip or k.startswith(skip + ".") for skip in NOT_THE_MODEL)
    }


def _file_hash(path: Path, digest) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)


def data_fingerprint(layout: Layout) -> str | None:
    """A hash of the label CSV and folds.csv (what a fold learns from), or
    None when the label CSV is not there (a test-only folder, a Kaggle kernel)."""
    if not layout.train_csv.is_file():
        return None
    digest = hashlib.blake2b(digest_size=16)
    for path in (layout.train_csv, layout.folds_csv):
        if path.is_file():
            _file_hash(path, digest)
    return digest.hexdigest()


def record_inputs(config: Config, fold: int) -> None:
    """config.yaml and inputs.json of a fold about to be trained."""
    out, layout = config.runs.fold(fold), config.layout
    config.save(out / "config.yaml")
    inputs = {"data_root": str(layout.root.resolve()), "fingerprint": data_fingerprint(layout)}
    write_text_atomic(out / INPUTS, json.dumps(inputs, indent=2))


def differences(config: Config, fold: int) -> list[str]:
    """What differs between the fold's inputs and the current config's
    (nothing for a fold folder without a saved config, and keys an older
    config did not have are not compared)."""
    out = config.runs.fold(fold)
    if not (out / "config.yaml").is_file():
        return []
    saved = model_settings(yaml.safe_load((out / "config.yaml").read_text()) or {})
    now = model_settings(config.to_dict())
    found = [
        f"{key}: {saved[key]!r} then, {now[key]!r} now"
        for key in sorted(saved.keys() & now.keys())
        if saved[key] != now[key]
    ]
    record = out / INPUTS
    if record.is_file():
        before = json.loads(record.read_text())
        current = data_fingerprint(config.layout)
        if before.get("fingerprint") and current and current != before["fingerprint"]:
            found.insert(
                0,
                (
                    f"data: the label CSV or folds.csv differ (trained on {before['data_root']}, "
                    f"now {config.layout.root.resolve()})"
                ),
            )
    return found


def check_same_inputs(config: Config, fold: int, way_on: str) -> None:
    """Stop, naming what differs, when the fold was made from other inputs."""
    found = differences(config, fold)
    if found:
        raise KitError(
            f"{config.runs.fold(fold)} was trained with other inputs than the current "
            f"config's:\n- " + "\n- ".join(found) + f"\n{way_on}"
        )


# --- an experiment's own config -------------------------------------------------


def experiment_config(
    name: str, config_path: str | None, overrides: list[str], runs_dir: str = "runs"
) -> Config:
    """The config an experiment was trained with (its first fold's saved
    config.yaml), with `overrides` applied: `make predict EXPERIMENT=name`
    needs no CONFIG, DATA_DIR or ARGS repeated. A command-line config or
    override that contradicts what made the folds is an error naming the keys."""
    from competition.config import load_config, parse_override

    runs_dir = dict(parse_override(o) for o in overrides).get("runs_dir", runs_dir)
    folder = Path(runs_dir) / name
    saved = sorted(folder.glob("fold*/config.yaml"))
    if not saved:
        raise KitError(
            f"No trained fold of experiment {name!r} in {folder} (fold<k>/config.yaml). "
            f"Train one first, or name the experiment's runs folder with --set runs_dir=..."
        )
    config = load_config(saved[0], overrides)
    given = load_config(config_path, overrides) if config_path else None
    trained = model_settings(yaml.safe_load(saved[0].read_text()))
    now = model_settings((given or config).to_dict())
    differ = sorted(k for k in trained.keys() & now.keys() if trained[k] != now[k])
    if differ:
        raise KitError(
            f"Experiment {name!r} was trained with other settings than this command gives: "
            + "; ".join(f"{k}: {trained[k]!r} trained, {now[k]!r} given" for k in differ)
            + f". Leave them out (its folds' settings are in {saved[0]}) or use another "
            "experiment name."
        )
    return config


def keep_predictions(config: Config) -> None:
    """The experiment's out-of-fold store (competition.stacking.store), rewritten
    after its folds train and its test set is predicted (no fold yet: nothing)."""
    from competition.stacking.store import write_store

    if any(config.runs.root.glob("fold*/oof.csv")):
        write_store(config.runs, config.task.outputs, data_fingerprint(config.layout))
