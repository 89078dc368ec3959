"""Callbacks that make one fold's `fit` resumable and crash-safe.

- EpochBackup: after every epoch, the full training state (weights and
  optimizer, so the learning-rate schedule continues) is written atomically
  to `backup/epoch-NNNN.weights.h5`; the epoch is in the file name, so the
  state and its epoch can never disagree. `latest_backup` finds it again.
- BestCheckpoint: ModelCheckpoint(save_best_only) written atomically; of a
  TrainingModel it saves the network alone (no augmentation layers).
- trim_history: drops the CSV rows of epochs that will be run again.
- BeforeWrites: a check (a cluster attempt's ownership) before each
  epoch's writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from competition.augment.layers import inference_network
from competition.fileio import atomic_path, write_csv_atomic, write_text_atomic

_BACKUP = re.compile(r"epoch-(\d{4})\.weights\.h5")


def latest_backup(folder: Path) -> tuple[int, Path] | None:
    """(epochs completed, state file) of the newest backup, or None."""
    found = [
        (int(m.group(1)), p)
        for p in Path(folder).glob("epoch-*.weights.h5")
        if (m := _BACKUP.fullmatch(p.name))
    ]
    return max(found) if found else None


class BeforeWrites(keras.callbacks.Callback):
    """Calls `check` at each epoch end before the callbacks after it write
    (history, checkpoint, backup); an exception from it stops the fit."""

    def __init__(self, check):
        super().__init__()
        self.check = check

    def on_epoch_end(self, epoch, logs=None):
        self.check()


class EpochBackup(keras.callbacks.Callback):
    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        path = self.folder / f"epoch-{epoch + 1:04d}.weights.h5"
        with atomic_path(path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        for older in self.folder.glob("epoch-*.weights.h5"):
            if older != path:
                older.unlink(missing_ok=True)


def restore(model: keras.Model, folder: Path) -> int:
    """Load the newest backup into a compiled model; returns the epoch to start at."""
    found = latest_backup(folder)
    if found is None:
        return 0
    epoch, path = found
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return epoch


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model when `monitor` improves, atomically, and records the
    best value in a JSON file beside it (a resumed run goes on from it)."""

    def __init__(self, path: Path, monitor: str, lower_is_better: bool = True):
        super().__init__()
        self.path, self.monitor, self.lower = Path(path), monitor, lower_is_better
        self.best = best_so_far(self.path, monitor, lower_is_better)

    def improves(self, value: float) -> bool:
        return value < self.best if self.lower else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value) or not self.improves(value):
            return
        with atomic_path(self.path, suffix=".keras") as tmp:
            inference_network(self.model).save(tmp)
        self.best = float(value)  # only once it is saved
        write_text_atomic(
            self.path.with_suffix(".json"),
            json.dumps({"epoch": epoch + 1, self.monitor: self.best}),
        )


def best_so_far(path: Path, monitor: str, lower_is_better: bool = True) -> float:
    """The monitored value of the saved checkpoint, or the worst possible one."""
    record = Path(path).with_suffix(".json")
    if Path(path).exists() and record.exists():
        saved = json.loads(record.read_text())
        if monitor in saved:
            return float(saved[monitor])
    return np.inf if lower_is_better else -np.inf


def trim_history(path: Path, start_epoch: int) -> None:
    """Keep the rows of epochs before `start_epoch` (0-based); a fresh start
    removes the file, so every epoch appears exactly once."""
    path = Path(path)
    if not path.exists():
        return
    if start_epoch == 0:
        path.unlink()
        return
    try:
        history = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # killed before Keras wrote the header
        path.unlink()
        return
    epochs = pd.to_numeric(history["epoch"], errors="coerce")  # a row cut short: NaN
    write_csv_atomic(path, history[epochs < start_epoch])
