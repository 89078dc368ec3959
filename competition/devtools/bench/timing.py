"""How the benchmark times: images per second of a pass, the best of a few
passes, one epoch of `fit`, and the fastest of alternating runs (a shared
machine's noise only ever adds time, and alternating makes a disturbance
hit every contender alike)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def images_per_second(batches, count: int) -> float:
    started = time.perf_counter()
    seen = sum(len(b[0] if isinstance(b, tuple) else b) for b in batches)
    assert seen == count, f"{seen} images for {count}"
    return count / (time.perf_counter() - started)


def best_rate(make_batches, count: int, repeats: int = 3) -> float:
    """The best of a few passes: on a shared machine the least disturbed
    pass is the loader's own speed (every loader is measured the same way)."""
    return max(images_per_second(make_batches(), count) for _ in range(repeats))


def generator_batches(gen, workers: int):
    """Every batch of a PyDataset, loaded by `workers` threads as Keras does."""
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(gen.__getitem__, range(len(gen)))


def memory_batches(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size].astype(np.float32)


def warm_files(paths: list[str]) -> None:
    """Read every file once, so no loader pays the first disk read."""
    for path in paths:
        Path(path).read_bytes()


def epoch_seconds(model, data, **kwargs) -> float:
    """Seconds of one epoch of `fit` (without its set-up)."""
    import keras

    times = []
    clock = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda e, logs: times.append(time.perf_counter()),
    )
    model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[clock], **kwargs)
    return times[1] - times[0]


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def fastest(runs: dict, rounds: int = 3) -> dict:
    """The fastest of a few runs of each (each returns its seconds), runs
    alternating so that a disturbance on the shared machine hits all alike,
    after one untimed warm-up each (tracing, first reads)."""
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    return best
