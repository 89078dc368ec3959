"""Crops around points: a square of crop.mm a side (a target's own in
crop.mm_by_target; PixelSpacing gives it in pixels, rows and columns each
their own) over the point's slice and crop.slices on each side (clamped
at the series' ends), resampled to a fixed size; a margin around it holds
the training jitter. A set of crops (one per point of a points table) is
cached as one .npz beside its table and the digest of what made it: the
same points and settings read it back, others write it again (atomically)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from competition.fileio import atomic_path, write_csv_atomic, write_text_atomic
from competition.localise.series import Volume
from competition.localise.settings import CropConfig


def stored_size(settings: CropConfig) -> int:
    """The cached crop's side: the crop and its jitter margin on each side."""
    return round(settings.size * (settings.mm + 2 * settings.jitter_mm) / settings.mm)


def crop(volume: Volume, s: int, x: float, y: float, settings: CropConfig,
         mm: float | None = None) -> np.ndarray:  # fmt: skip
    """(2k + 1, N, N) uint8 around (x, y) on slice s, N = stored_size; `mm`:
    the target's own side (crop.mm_by_target), its jitter margin in proportion."""
    n = stored_size(settings)
    side = (settings.mm + 2 * settings.jitter_mm) * (mm or settings.mm) / settings.mm
    row_mm, col_mm = volume.spacing
    # output pixel (u, v) <- source (x + (u - n/2) * sx, y + (v - n/2) * sy)
    sx, sy = side / col_mm / n, side / row_mm / n
    matrix = np.array([[sx, 0, x - sx * n / 2], [0, sy, y - sy * n / 2]], np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = [
        cv2.warpAffine(
            volume.slice(s + d),
            matrix,
            (n, n),
            flags=flags,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        for d in range(-settings.slices, settings.slices + 1)
    ]
    return np.clip(np.rint(np.stack(out)), 0, 255).astype(np.uint8)


def window(crops: np.ndarray, settings: CropConfig, rng: np.random.Generator | None) -> np.ndarray:
    """The crop.size window of each stored crop: the centre, or shifted by
    up to crop.jitter_mm (training, `rng`)."""
    n, size = crops.shape[-1], settings.size
    margin = (n - size) // 2
    if rng is None or margin == 0:
        return crops[..., margin : margin + size, margin : margin + size]
    shifts = rng.integers(-margin, margin + 1, size=(len(crops), 2)) + margin
    return np.stack(
        [c[..., dy : dy + size, dx : dx + size] for c, (dy, dx) in zip(crops, shifts, strict=True)]
    )


def _digest(points: pd.DataFrame, settings: CropConfig) -> str:
    text = points.to_csv(index=False) + json.dumps(settings.__dict__, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_crops(
    points: pd.DataFrame, volumes: dict[str, Volume], settings: CropConfig, path: Path
) -> np.ndarray:
    """The crops of `points` (series, slice, x, y), from path (.npz) while
    it was made from these points and settings, else made and written."""
    path = Path(path)
    digest = _digest(points[["series", "target", "slice", "x", "y"]], settings)
    record = path.with_suffix(".json")
    if (
        path.is_file()
        and record.is_file()
        and json.loads(record.read_text()).get("digest") == digest
    ):
        with np.load(path) as saved:
            return saved["crops"]
    n = stored_size(settings)
    made = np.zeros((len(points), 2 * settings.slices + 1, n, n), np.uint8)
    for i, row in enumerate(points.itertuples()):
        mm = settings.mm_by_target.get(row.target)
        made[i] = crop(volumes[row.series], int(row.slice), row.x, row.y, settings, mm)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, crops=made)
    write_csv_atomic(path.with_suffix(".csv"), points)
    write_text_atomic(record, json.dumps({"digest": digest, "count": len(points)}))
    return made
