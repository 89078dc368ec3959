"""Random flips of a whole (B, [T,] H, W, C) uint8 batch on the host, in place:
the `RandomFlip` step of the augmentation (competition.augment.spec), run
here rather than in the graph because on the host it is a memory copy
(OpenCV's SIMD flip) that the model never waits for, while in the graph it
costs a small network's step rate (docs/benchmarks.md)."""

from __future__ import annotations

import cv2
import numpy as np


def _flip(batch: np.ndarray, chosen: np.ndarray, axis: int) -> None:
    """Flip the chosen images in place (OpenCV's SIMD flip where it can);
    `axis` counts from the end (-2: left-right, -3: up-down), so that a
    unit's stack of slices (T, H, W, C) flips as one."""
    for i in np.flatnonzero(chosen):
        image = batch[i]
        if image.ndim == 3 and image.shape[-1] <= 4 and image.flags.c_contiguous:
            cv2.flip(image, 1 if axis == -2 else 0, dst=image)
        else:
            batch[i] = np.flip(image, axis=axis)


def flip_batch(
    batch: np.ndarray, rng: np.random.Generator, probabilities: tuple[float, float]
) -> np.ndarray:
    """Each image flipped left-right and up-down with the given probabilities."""
    n = len(batch)
    horizontal, vertical = probabilities
    _flip(batch, rng.random(n) < horizontal, axis=-2)
    _flip(batch, rng.random(n) < vertical, axis=-3)
    return batch
