"""CT windows: Hounsfield units -> uint8 display values, one channel per
(center, width) window. NumPy only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Brain 40/80, blood 80/200, soft tissue 40/380: the three windows head-CT models
# take as channels.
DEFAULT_WINDOWS = ((40, 80), (80, 200), (40, 380))


def window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map [center - width/2, center + width/2] HU to 0..255 (uint8), clipped."""
    return window_stack(hu, [(center, width)])[..., 0]


def window_stack(
    hu: np.ndarray, windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS
) -> np.ndarray:
    """One uint8 channel per (center, width) window: (H, W) -> (H, W, C)."""
    params = np.asarray(windows, dtype=np.float32)
    low = params[:, 0] - params[:, 1] / 2
    scale = 255.0 / params[:, 1]
    out = (hu[..., None] - low) * scale
    np.clip(out, 0, 255, out=out)
    return np.rint(out, out=out).astype(np.uint8)
