"""The DataGenerator: a `keras.utils.PyDataset` (Keras 3's `Sequence`) over
image IDs, yielding `(x, y)` batches for `fit` and `x` for `predict`.

It is correct under a plain `model.fit(generator, validation_data=...)`,
with no extra settings or callbacks, because of the Keras 3 facts it is
built around:

- `__len__` is ceil(n / batch_size), so `predict` keeps the tail;
- `fit(shuffle=True)` only permutes whole batches: the samples are shuffled
  here (`sampler.py`), from the seed and the epoch, so Keras' permutation
  of the batch order (fit's default) changes nothing but the order of steps;
- `on_epoch_end` is called more than once (before the first epoch, when a
  fit starts), so the epoch is counted at `on_epoch_begin`, once per epoch
  Keras runs; a resumed fit says where it starts (`resume_at`), so it draws
  the batches an uninterrupted one would.

A worker's error that is not a bad image file (an I/O error, a bug in a
custom source) stops the run naming the image (`ImageLoadError`); the kit's
training model raises it as itself, not as TensorFlow's wrapper of it
(`surfacing_load_errors`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Sequence

import keras
import numpy as np

from competition.augment.flips import flip_batch
from competition.data.sampler import Sampler
from competition.errors import ImageReadError, KitError
from competition.ids import check_image_ids
from competition.workers import worker_count

log = logging.getLogger(__name__)


class ImageLoadError(KitError, RuntimeError):
    """Reading an image failed in a way that is not a bad file (an I/O error,
    a bug in a custom source): it stops the run, naming the image."""


# Keras runs the generator inside tf.data, which re-raises a worker's error
# as a TensorFlow error whose text holds the original "ImageLoadError: ...".
_WRAPPED = re.compile(r"ImageLoadError: (.+)")


@contextlib.contextmanager
def surfacing_load_errors(*generators: DataGenerator):
    """Around fit / predict: an error of a generator's worker comes out as the
    kit's error naming the image (ImageLoadError, CacheError), not as
    TensorFlow's wrapper of it."""
    try:
        yield
    except KitError:
        raise
    except Exception as exc:
        for gen in generators:
            if gen.error is not None:
                raise gen.error from exc
        found = _WRAPPED.search(str(exc))  # raised in a worker process
        if found:
            raise ImageLoadError(found.group(1)) from exc
        raise


class DataGenerator(keras.utils.PyDataset):
    def __init__(
        self,
        image_ids: Sequence[str],
        source,
        labels: np.ndarray | None = None,
        *,
        batch_size: int = 32,
        shuffle: bool = False,
        flips: tuple[float, float] | None = None,
        augment_batch=None,
        seed: int = 0,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        steps_per_epoch: int = 0,
        repeats: np.ndarray | None = None,
        extra: np.ndarray | None = None,
    ):
        # Checked before numpy, which drops a trailing NUL ("x\0" -> "x").
        check_image_ids(list(image_ids), "DataGenerator")
        self.image_ids = np.asarray(image_ids, dtype=str)
        if len(self.image_ids) == 0:
            raise ValueError("DataGenerator needs at least one image ID. Received: 0")
        if labels is not None and len(labels) != len(self.image_ids):
            raise ValueError(
                f"labels must have one row per image ID. Received: {len(labels)} rows "
                f"for {len(self.image_ids)} IDs"
            )
        self.source = source
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        # a second model input per image (the metadata vector): x is (images, extra)
        self.extra = None if extra is None else np.asarray(extra, dtype=np.float32)
        if self.extra is not None and len(self.extra) != len(self.image_ids):
            raise ValueError(
                f"extra must have one row per image ID. Received: {len(self.extra)} rows "
                f"for {len(self.image_ids)} IDs"
            )
        self.batch_size, self.shuffle, self.flips, self.seed = batch_size, shuffle, flips, seed
        self.augment_batch = augment_batch  # (uint8 batch, key) -> float32: host augmentation
        self.epoch = 0  # the epoch being drawn (see on_epoch_begin)
        self._next_epoch = 0
        self.sampler = Sampler(
            len(self.image_ids), batch_size, seed, shuffle, steps_per_epoch, repeats
        )
        # Under data parallelism on JAX, a batch must split evenly over the
        # devices: labelled batches are padded to a multiple of `pad_to` with
        # repeats of weight 0 (set by competition.training.devices).
        self.pad_to = 1
        self.failed: dict[str, str] = {}  # image ID -> why it could not be read
        self.error: KitError | None = None  # the first failure that stops the run
        # Where each image sits in a source that reads batches at once (the cache).
        locate = getattr(source, "locate", None)
        self._source_rows = locate(self.image_ids) if locate is not None else None
        self._lock = threading.Lock()
        super().__init__(
            workers=self._useful_workers(worker_count(workers)),  # 0: every core
            use_multiprocessing=use_multiprocessing,
            max_queue_size=max_queue_size,
        )

    # --- the PyDataset contract ----------------------------------------------

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index out of range 0..{len(self) - 1}. Received: {index}")
        return self.load_batch(self.sampler.rows(self.epoch, index), index)

    def on_epoch_begin(self) -> None:
        """Keras starts an epoch: the next one of this generator's count."""
        self.epoch = self._next_epoch
        self._next_epoch += 1

    def resume_at(self, epoch: int) -> None:
        """The next fit starts at `epoch` (0-based): a resumed fit's
        `initial_epoch`, so that it draws the batches an uninterrupted one would."""
        self.epoch = self._next_epoch = epoch

    # --- helpers ---------------------------------------------------------------

    def _useful_workers(self, workers: int) -> int:
        """One when every batch is a single read from the raw cache with at
        most flips: that is a memory copy of microseconds, and a second thread
        only fights the first for the GIL (measured: 2 threads ~0.6x of 1).
        Keras still prefetches it in the background. Per-image work (DICOM
        or cache-entry decode) gets the configured threads."""
        rows = self._source_rows
        cheap = rows is not None and bool((rows >= 0).all()) and self.augment_batch is None
        cheap = cheap and getattr(self.source, "cheap_take", False)
        return 1 if cheap else workers

    @property
    def ids(self) -> np.ndarray:
        """Image IDs in the order batches deliver them (inference: input order)."""
        return self.image_ids[self.sampler.order(self.epoch)]

    @property
    def training(self) -> bool:
        return self.labels is not None

    @property
    def dtype(self) -> np.dtype:
        """uint8 (the model casts in-graph), float32 after host augmentation."""
        return np.dtype(np.uint8 if self.augment_batch is None else np.float32)

    def load_batch(self, rows: np.ndarray, batch_index: int = 0):
        """The batch of the given sample rows: x (B, H, W, C) in 0..255 as
        `dtype`, plus y float32 (B, outputs) when labelled (and per-row weights
        when padded, see pad_to). An unreadable image is replaced by the next
        readable one in the epoch's order, and remembered."""
        rows = np.array(rows, dtype=np.int64)
        images = self._gather(rows)
        if images is None:
            images = np.empty((len(rows), *self.source.shape), dtype=np.uint8)
            for i, row in enumerate(rows):
                rows[i], images[i] = self._load_readable(int(row))
        x = images
        if self.flips is not None or self.augment_batch is not None:
            # Seeded by what is in the batch: reproducible, whoever calls.
            rng = np.random.default_rng([self.seed, self.epoch, batch_index, *rows.tolist()])
            if self.flips is not None and any(self.flips):
                flip_batch(images, rng, self.flips)
            if self.augment_batch is not None:
                x = self.augment_batch(images, int(rng.integers(2**31)))
        if self.extra is not None:
            x = (x, self.extra[rows])
        if not self.training:  # a bare tuple would be read by Keras as (x, y)
            return (x,) if self.extra is not None else x
        if self.pad_to > 1:
            size = -(-len(rows) // self.pad_to) * self.pad_to
            repeated = np.arange(size) % len(rows)
            weights = (np.arange(size) < len(rows)).astype(np.float32)
            x = tuple(part[repeated] for part in x) if isinstance(x, tuple) else x[repeated]
            return x, self.labels[rows][repeated], weights
        return x, self.labels[rows]

    def fill_unreadable(self, predictions: np.ndarray, training_mean: np.ndarray) -> np.ndarray:
        """Inference: the rows of images that could not be read get the
        training mean (their blank input's prediction means nothing)."""
        predictions[np.isin(self.ids, list(self.failed))] = training_mean
        return predictions

    def _gather(self, rows: np.ndarray) -> np.ndarray | None:
        """The whole batch as uint8 in one read from a source that can (the
        cache), when every image in it is there and readable; else None."""
        if self._source_rows is None:
            return None
        located = self._source_rows[rows]
        if (located < 0).any():
            return None
        try:
            return self.source.take(located)
        except Exception as exc:
            names = ", ".join(self.image_ids[rows][:4]) + (" ..." if len(rows) > 4 else "")
            raise self._load_error(names, exc) from exc

    def _load_error(self, image_id: str, exc: Exception) -> ImageLoadError:
        """The error that stops the run, remembered for surfacing_load_errors."""
        split = getattr(self.source, "split", "")
        error = ImageLoadError(
            f"Reading {split} image {image_id} failed ({type(exc).__name__}: {exc}); "
            "the run stopped. A bad image file would have been skipped: this is an "
            "I/O or code error. Fix it and run the command again (training resumes "
            "from its last completed epoch)."
        )
        self._remember(error)
        return error

    def _remember(self, error: KitError) -> None:
        with self._lock:
            self.error = self.error or error

    def _load_readable(self, row: int) -> tuple[int, np.ndarray]:
        """Training: the next readable sample from `row` on. Inference keeps
        the row (predictions stay aligned with `ids`) and gives a blank image
        whose prediction the caller must replace: see `failed`."""
        n = len(self.image_ids)
        for step in range(n if self.training else 1):
            candidate = (row + step) % n
            image_id = str(self.image_ids[candidate])
            if image_id in self.failed:
                continue
            try:
                return candidate, self.source.load(image_id)
            except ImageReadError as exc:
                with self._lock:
                    self.failed[image_id] = exc.cause
                log.warning("Unreadable image %s: %s", image_id, exc.cause)
            except KitError as exc:  # the kit's own message already names the image
                self._remember(exc)
                raise
            except Exception as exc:
                raise self._load_error(image_id, exc) from exc
        if not self.training:
            return row, np.zeros(self.source.shape, dtype=np.uint8)
        raise ImageReadError(self.source.layout.root, "no readable image left in this split")
