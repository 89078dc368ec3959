"""Keypoints as heatmaps: the localiser's targets and what its output says.

A target's heatmap on a slice is a Gaussian at its point (sigma in the
heatmap's pixels), scaled by how far the slice is from the labelled one
(a Gaussian of `slice_sigma` slices): the localiser learns where the point
is and on which slice, and a peak's height ranks the slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def gaussian(size: int, x: float, y: float, sigma: float) -> np.ndarray:
    """(size, size) float32 with a unit peak at (x, y) (heatmap pixels)."""
    grid = np.arange(size, dtype=np.float32)
    gx = np.exp(-((grid - x) ** 2) / (2 * sigma**2))
    gy = np.exp(-((grid - y) ** 2) / (2 * sigma**2))
    return np.outer(gy, gx).astype(np.float32)


def slice_weight(distance: float, slice_sigma: float) -> float:
    """How much of a target's peak a slice `distance` slices away carries."""
    return float(np.exp(-(distance**2) / (2 * slice_sigma**2)))


@dataclass(frozen=True)
class Peak:
    x: float  # heatmap pixels
    y: float
    score: float


def _offset(left: float, centre: float, right: float) -> float:
    """Where a parabola through three log-heights peaks (exact for a Gaussian), within +-0.5."""
    left, centre, right = (np.log(max(v, 1e-6)) for v in (left, centre, right))
    curve = left - 2 * centre + right
    return 0.0 if curve >= 0 else float(np.clip((left - right) / (2 * curve), -0.5, 0.5))


def peak(heatmap: np.ndarray) -> Peak:
    """The highest point of one (H, W) heatmap, refined to a fraction of a
    pixel by a parabola through the log-heights beside it on each axis."""
    h, w = heatmap.shape
    y, x = divmod(int(np.argmax(heatmap)), w)
    dx = _offset(heatmap[y, x - 1], heatmap[y, x], heatmap[y, x + 1]) if 0 < x < w - 1 else 0.0
    dy = _offset(heatmap[y - 1, x], heatmap[y, x], heatmap[y + 1, x]) if 0 < y < h - 1 else 0.0
    return Peak(x + dx, y + dy, float(heatmap[y, x]))


def best_slice(heatmaps: np.ndarray, prior: np.ndarray) -> tuple[int, Peak]:
    """(S, H, W) heatmaps of one target over a series' slices -> the slice
    whose peak times its `prior` weight is highest, and that peak."""
    s = int(np.argmax(heatmaps.reshape(len(heatmaps), -1).max(axis=1) * prior))
    return s, peak(heatmaps[s])


def slice_profile(heatmaps: np.ndarray) -> np.ndarray:
    """(S, H, W) heatmaps of one target -> each slice's peak over the highest:
    how much of the target the localiser sees on each slice (0..1)."""
    tops = heatmaps.reshape(len(heatmaps), -1).max(axis=1)
    return tops / max(float(tops.max()), 1e-6)
