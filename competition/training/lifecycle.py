"""A fold's lifecycle, the same for every stage that trains one (the CNN and
the sequence model over its features):

1. a finished fold (its metrics.json) is reused, not trained again, unless
   --force;
2. one writer per fold folder (`competition.locks`); --force empties it first;
3. `fit` resumes from the last epoch's backup after a kill: the history
   keeps each epoch once, the best checkpoint goes on from its recorded
   best, the training generator draws the batches an uninterrupted run would;
4. then metrics.json, the curves and the table; the backup is removed.

    <fold folder>/  history.csv, best.keras (+ best.json), backup/epoch-NNNN.weights.h5,
                    tensorboard/, metrics.json, curves.png
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras

from competition.evaluation.report import fold_table, save_curves
from competition.fileio import disk_full_is_an_error, write_text_atomic
from competition.locks import LOCK, exclusive
from competition.progress import keras_verbose
from competition.task import TaskSpec
from competition.training import callbacks as cb
from competition.training.records import METRICS, read_metrics


def finished_metrics(out: Path, what: str) -> dict | None:
    """The metrics of a finished fold (its metrics.json), saying it is reused; else None."""
    path = out / METRICS
    if not path.is_file():
        return None
    print(f"{what} already trained ({path}); --force trains it again.")
    return read_metrics(out)


@contextlib.contextmanager
def writing(out: Path, what: str, force: bool) -> Iterator[float]:
    """Hold the fold folder (one writer), emptied first under --force;
    yields the time training started."""
    with exclusive(out, what):
        if force:  # everything but the lock this run holds
            for child in (c for c in out.iterdir() if c.name != LOCK):
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        out.mkdir(parents=True, exist_ok=True)
        yield time.perf_counter()


def fold_callbacks(
    task: TaskSpec,
    out: Path,
    patience: int,
    ema: bool = False,
    resumed: bool = False,
    freeze_epochs: int = 0,
) -> list[keras.callbacks.Callback]:
    """The backbone's gate set for the epoch (`freeze_epochs`), the averaged
    weights swapped in (`ema`; first, so that what follows sees them),
    history, best checkpoint, TensorBoard (every backend), epoch backup, early stopping. The
    backup goes last: a kill before it re-runs the epoch, and trim_history
    drops the rows already logged for it."""
    lower = task.monitor_lower_is_better
    found = [
        *([cb.FrozenBackbone(freeze_epochs)] if freeze_epochs else []),
        *([cb.AveragedWeights(resumed)] if ema else []),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        cb.BestCheckpoint(out / "best.keras", task.monitor, lower),
    ]
    found.extend(tensorboard_logs(out / "tensorboard"))
    early = keras.callbacks.EarlyStopping(
        monitor=task.monitor, mode="min" if lower else "max", patience=patience
    )
    return [*found, cb.EpochBackup(out / "backup"), early]


def tensorboard_logs(folder: Path) -> list[keras.callbacks.Callback]:
    """Keras' TensorBoard callback on TensorFlow (it writes with tf.summary);
    on JAX and PyTorch, whose processes keep TensorFlow out, the epoch
    scalars through the tensorboard package alone; none without it."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return []
    if keras.backend.backend() == "tensorflow":
        return [keras.callbacks.TensorBoard(log_dir=str(folder))]
    return [cb.ScalarLog(folder)]


def fit_resumable(
    model: keras.Model,
    train,
    valid,
    out: Path,
    what: str,
    *,
    task: TaskSpec,
    epochs: int,
    patience: int,
    guard: Callable[[], None] | None = None,
    generator=None,
    ema: bool = False,
    freeze_epochs: int = 0,
) -> None:
    """`model.fit` from the newest backup in `out` (epoch 0 without one).
    `generator`: the training DataGenerator when `train` wraps it (tf.data
    under a strategy), told where the fit starts. `guard` (a cluster
    attempt's ownership check) runs before each epoch's writes. `ema`: the
    optimizer averages the weights; `freeze_epochs`: the backbone gets no
    gradient in the first epochs (see fold_callbacks)."""
    start = cb.restore(model, out / "backup")
    cb.trim_history(out / "history.csv", start)
    if start:
        print(f"Resuming {what} at epoch {start + 1} from {out / 'backup'}")
    drawn = generator if generator is not None else train
    if hasattr(drawn, "resume_at"):
        drawn.resume_at(start)
    with disk_full_is_an_error(out):  # Keras' own history.csv appends, too
        model.fit(
            train,
            validation_data=valid,
            epochs=epochs,
            initial_epoch=start,
            shuffle=False,
            verbose=keras_verbose(),
            callbacks=[
                *([cb.BeforeWrites(guard)] if guard else []),
                *fold_callbacks(task, out, patience, ema, start > 0, freeze_epochs),
            ],
        )


def finish(out: Path, metrics: dict, started: float, task: TaskSpec) -> dict:
    """The fold's time, curves and metrics.json; its backup removed; its table printed."""
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    metrics["backend"] = keras.backend.backend()  # the Kaggle kernel runs on it by default
    metrics["precision"] = keras.mixed_precision.global_policy().name  # `auto` resolved
    save_curves(out / "history.csv", out / "curves.png", task.monitor)
    write_text_atomic(out / METRICS, json.dumps(metrics, indent=2))
    shutil.rmtree(out / "backup", ignore_errors=True)
    print(fold_table(metrics, task.sample_noun))
    return metrics
