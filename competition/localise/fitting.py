"""What the two-stage models share: a seeded batch order per epoch (a
resumed fit draws what an uninterrupted one would), and `fit` resumed from
its last epoch's backup after a kill, the finished model saved whole
(atomically) and the backup removed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras
import numpy as np

from competition.fileio import atomic_path
from competition.progress import keras_verbose
from competition.training import callbacks as cb

MODEL = "model.keras"


class Batches(keras.utils.PyDataset):
    """Batches of `count` samples, reshuffled each epoch from (seed, epoch)
    when `shuffle`; `make(rows) -> (x, y)` builds one."""

    def __init__(self, count: int, batch_size: int, make, seed: int, shuffle: bool):
        super().__init__()
        self.count, self.batch_size, self.make = count, batch_size, make
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.count)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.count)

    def resume_at(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = self._order()

    def __len__(self) -> int:
        return max(1, -(-self.count // self.batch_size))

    def __getitem__(self, i: int):
        return self.make(self.order[i * self.batch_size : (i + 1) * self.batch_size])

    def on_epoch_end(self) -> None:
        self.resume_at(self.epoch + 1)


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """model.predict on x padded to whole batches: one input shape for every
    call, so a graph backend traces it once (series of every length)."""
    if not len(x):
        return np.zeros((0, *model.output.shape[1:]), np.float32)
    pad = -len(x) % batch_size
    padded = np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if pad else x
    return np.asarray(model.predict(padded, verbose=0, batch_size=batch_size))[: len(x)]


def finished(out: Path) -> keras.Model | None:
    """The saved model of a finished fit, or None."""
    path = Path(out) / MODEL
    return keras.models.load_model(path) if path.is_file() else None


def fit_and_save(model: keras.Model, data: Batches, epochs: int, out: Path, what: str) -> dict:
    """`fit` from the newest backup in out/backup; the model saved as
    out/model.keras; returns the seconds and the last loss."""
    out = Path(out)
    started = time.perf_counter()
    start = cb.restore(model, out / "backup")
    if start:
        print(f"Resuming {what} at epoch {start + 1} from {out / 'backup'}")
    data.resume_at(start)
    history = model.fit(
        data,
        epochs=epochs,
        initial_epoch=start,
        shuffle=False,
        verbose=keras_verbose(),
        callbacks=[cb.EpochBackup(out / "backup")],
    )
    with atomic_path(out / MODEL, suffix=".keras") as tmp:
        model.save(tmp)
    shutil.rmtree(out / "backup", ignore_errors=True)
    losses = history.history.get("loss") or [float("nan")]
    return {"seconds": round(time.perf_counter() - started, 1), "loss": float(losses[-1])}
