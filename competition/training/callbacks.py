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


def _seed_states(model: keras.Model) -> list:
    """The random generators' states (dropout, in-graph augmentation):
    Keras' save_weights leaves them out, and a resumed fit would otherwise
    draw the first epochs' masks again."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _seeds_path(weights: Path) -> Path:
    return weights.with_name(weights.name.replace(".weights.h5", ".seeds.npy"))


class EpochBackup(keras.callbacks.Callback):
    """The model's and optimizer's state at each epoch's end (weights, then
    the random generators' states beside them, written first: the weights
    file marks the epoch whole); the previous epoch's removed."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        path, seeds = self.folder / f"epoch-{epoch + 1:04d}.weights.h5", None
        states = [keras.ops.convert_to_numpy(v) for v in _seed_states(self.model)]
        if states:
            seeds = _seeds_path(path)
            with atomic_path(seeds, suffix=".npy") as tmp:
                np.save(tmp, np.asarray(states, dtype=np.int64).reshape(len(states), -1))
        try:
            with atomic_path(path, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
        except BaseException:
            if seeds is not None:  # no half backup: the epoch is not kept at all
                seeds.unlink(missing_ok=True)
            raise
        for older in [
            *self.folder.glob("epoch-*.weights.h5"),
            *self.folder.glob("epoch-*.seeds.npy"),
        ]:
            if older not in (path, _seeds_path(path)):
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
    seeds, states = _seeds_path(path), _seed_states(model)
    if seeds.is_file():  # a backup from before the states were kept: fresh generators
        saved = np.load(seeds)
        if len(saved) == len(states):
            for variable, value in zip(states, saved, strict=True):
                variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))
    return epoch


class ScalarLog(keras.callbacks.Callback):
    """TensorBoard scalars without TensorFlow (JAX and PyTorch keep it out of
    the process): each epoch's logs and learning rate as event files, laid
    out as Keras' TensorBoard callback lays them (train/ and validation/,
    `epoch_<name>`), written with the tensorboard package's own writer."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder, self.writers = Path(folder), {}

    def _write(self, split: str, tag: str, value: float, step: int) -> None:
        import time

        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if split not in self.writers:
            self.writers[split] = EventFileWriter(str(self.folder / split))
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self.writers[split].add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            split, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            self._write(split, f"epoch_{tag}", value, epoch)
        rate = self.model.optimizer.learning_rate
        self._write("train", "epoch_learning_rate", keras.ops.convert_to_numpy(rate), epoch)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


def gate_of(model: keras.Model):
    """The BackboneGate layer inside `model` (nested models searched), or None."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.name == "backbone_gate":
            return layer
    return None


class FrozenBackbone(keras.callbacks.Callback):
    """train.freeze_epochs: the backbone's gate closed (no gradient) in the
    first `epochs` epochs and open after; set at each epoch's start from the
    epoch number, so a resumed fit is in the right phase."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        gate = gate_of(self.model)
        if gate is None:
            raise RuntimeError("train.freeze_epochs needs a model built with its backbone gate")
        gate.open.assign(0.0 if epoch < self.epochs else 1.0)


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """train.ema: validation, the best checkpoint and the epoch backup see
    the averaged weights (Keras swaps them in at each epoch's end and out at
    the next one's start). A fit resumed from a backup starts with them in
    place (`resumed`): its first epoch swaps the trained weights back first,
    so the state is the uninterrupted run's."""

    def __init__(self, resumed: bool = False):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = resumed


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
