"""A progress bar with rate and ETA for the kit's own long loops (header
scans, synthetic data, caches); Keras shows its own in fit/predict."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """`desc: 120/400 [30%] 85.2 slices/s, ETA 00:03`, redrawn in place on a
    terminal and printed about every 10% elsewhere (logs stay short)."""

    def __init__(self, total: int, desc: str, unit: str = "files", stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = time.perf_counter()
        self.interactive = self.stream.isatty()
        self._last_shown = -1.0
        self._last_decile = -1

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        decile = self.done * 10 // max(self.total, 1)
        if self.interactive and now - self._last_shown >= 0.1:
            self._show(end="\r")
            self._last_shown = now
        elif not self.interactive and decile > self._last_decile:
            self._show(end="\n")
            self._last_decile = decile

    @property
    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.started, 1e-9)

    def _show(self, end: str) -> None:
        rate = self.rate
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        percent = 100 * self.done / max(self.total, 1)
        self.stream.write(
            f"{self.desc}: {self.done}/{self.total} [{percent:3.0f}%] "
            f"{rate:.1f} {self.unit}/s, ETA {_clock(eta)}{end}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.interactive or self._last_decile < 10:
            self._show(end="\n")


def keras_verbose() -> int:
    """Keras' progress bar on a terminal; one line per epoch in logs (Kaggle, CI)."""
    return 1 if sys.stdout.isatty() else 2
