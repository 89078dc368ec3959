"""Which samples make batch `b` of epoch `e`: reproducible from the seed and
the epoch alone, so a resumed run draws what an uninterrupted one would.

- Inference: the input order, every sample once.
- Training, one pass per epoch (`train.steps_per_epoch: 0`, no weights): a
  fresh permutation per epoch.
- Training with `steps_per_epoch` or label weights: one endless stream of
  passes, each pass a shuffled multiset holding every sample at least once
  (sample i `repeats[i]` times, a fractional part drawn per pass), and epoch
  e the stream's batches e*S .. e*S+S-1. So every sample is seen once before
  one is seen again, however the passes fall across these shorter epochs and
  across a resume; weighted samples come back more often within a pass.
"""

from __future__ import annotations

import math
import threading

import numpy as np


class Sampler:
    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = False,
        steps_per_epoch: int = 0,
        repeats: np.ndarray | None = None,
    ):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.repeats = None if repeats is None else np.asarray(repeats, np.float64)
        if self.repeats is not None and (len(self.repeats) != n or (self.repeats < 1).any()):
            raise ValueError(f"repeats must be {n} values >= 1. Received: {self.repeats}")
        self.streamed = shuffle and (steps_per_epoch > 0 or self.repeats is not None)
        per_pass = self.repeats.sum() if self.repeats is not None else n
        self.steps = steps_per_epoch or math.ceil(per_pass / batch_size)
        if not self.streamed:
            self.steps = math.ceil(n / batch_size)
        self._starts = [0]  # stream position where each pass begins
        self._passes: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.steps

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's sample order (one pass; not for a streamed sampler)."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def rows(self, epoch: int, index: int) -> np.ndarray:
        if not self.streamed:
            return self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        start = (epoch * self.steps + index) * self.batch_size
        return self.stream(start, start + self.batch_size)

    # --- the stream of passes ----------------------------------------------------

    def pass_rows(self, q: int) -> np.ndarray:
        """Pass q: every sample at least once, in a seeded random order."""
        if q not in self._passes:
            rng = np.random.default_rng([self.seed, q, 1])
            if self.repeats is None:
                rows = rng.permutation(self.n)
            else:
                whole = np.floor(self.repeats)
                counts = (whole + (rng.random(self.n) < self.repeats - whole)).astype(np.int64)
                rows = rng.permutation(np.repeat(np.arange(self.n), counts))
            if len(self._passes) >= 2:  # a batch spans at most two passes
                self._passes.pop(min(self._passes))
            self._passes[q] = rows
        return self._passes[q]

    def _pass_of(self, position: int) -> int:
        while self._starts[-1] <= position:
            q = len(self._starts) - 1
            length = self.n if self.repeats is None else len(self.pass_rows(q))
            self._starts.append(self._starts[-1] + length)
        return int(np.searchsorted(self._starts, position, side="right")) - 1

    def stream(self, start: int, stop: int) -> np.ndarray:
        """Stream positions start..stop-1 (Keras may ask from several threads)."""
        with self._lock:
            out, position = [], start
            while position < stop:
                q = self._pass_of(position)
                offset = position - self._starts[q]
                piece = self.pass_rows(q)[offset : offset + stop - position]
                out.append(piece)
                position += len(piece)
        return np.concatenate(out)

    def __getstate__(self) -> dict:  # worker processes get their own lock
        return {**self.__dict__, "_lock": None, "_passes": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())
