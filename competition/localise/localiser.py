"""The localisation stage's model, per series kind: trained with `fit` on
the labelled points of the fold's training units, it predicts each target's
point and the slice it lies on, for a series it has never seen.

A sample is one slice with its neighbours as the 3 channels (a slice and
the ones beside it tell the slices apart), resized to localiser.image_size;
its target, per target of the kind, the Gaussian heatmap of the target's
point scaled by the slice's distance from the labelled slice
(competition.localise.heatmaps), or, on a masked series, by how much of
the target the slice shows; the targets the series has no point for are
masked. Each series gives its slices near a labelled one, and
`negatives` others per labelled slice.

Prediction runs every slice of a series; per target, the slice whose
peak, times the slice prior, is highest, and the peak's place mapped back
to the slice's pixels; and each slice's peak over the highest (the
`profile`: how much of the target the localiser sees there). The slice
prior is where along its series each target was labelled in the training
units (relative position 0..1, a Gaussian kernel of PRIOR_WIDTH, never
under PRIOR_FLOOR): what tells a left foramen's slices from the right's,
which look alike. A peak below localiser.min_score is "not found": the
crop falls back to the series' centre, with a report line.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd

from competition.fileio import write_text_atomic
from competition.localise import heatmaps
from competition.localise.fitting import Batches, fit_and_save, predict
from competition.localise.network import STRIDE, HeatmapLoss, build_localiser
from competition.localise.series import Volume
from competition.localise.settings import LocaliserConfig
from competition.training.settings import ModelConfig

NEAR = 2  # slices this close to a labelled one are always trained on
PRIOR = "slice_prior.json"
PRIOR_WIDTH, PRIOR_FLOOR = 0.08, 0.05


class SliceInputs:
    """(series, slice) -> the localiser's (L, L, 3) uint8 input, the most
    recently used kept up to `budget` bytes (a competition's every slice at
    256 px would not fit in memory; a small stand-in's all do)."""

    def __init__(self, volumes: dict[str, Volume], size: int, budget: int = 2 << 30):
        self.volumes, self.size = volumes, size
        self._made: OrderedDict = OrderedDict()
        self._room = max(1, budget // (size * size * 3))

    def get(self, series: str, s: int) -> np.ndarray:
        key = (series, s)
        if key in self._made:
            self._made.move_to_end(key)
            return self._made[key]
        volume = self.volumes[series]
        stack = np.stack([volume.slice(s + d) for d in (-1, 0, 1)], axis=-1)
        made = cv2.resize(stack, (self.size, self.size), interpolation=cv2.INTER_AREA)
        self._made[key] = made.astype(np.uint8)
        if len(self._made) > self._room:
            self._made.popitem(last=False)
        return self._made[key]

    def scale(self, series: str) -> tuple[float, float]:
        """Slice pixels -> heatmap pixels, (x, y)."""
        rows, cols = self.volumes[series].shape
        out = self.size / STRIDE
        return out / cols, out / rows


@dataclass(frozen=True)
class Sample:
    series: str
    slice: int
    peaks: tuple  # (target position, x, y in heatmap pixels, amplitude) ...
    known: tuple  # target positions labelled on this series


def training_samples(
    points: pd.DataFrame,
    targets: list[str],
    inputs: SliceInputs,
    settings: LocaliserConfig,
    seed: int,
    visibility: dict | None = None,
) -> list[Sample]:
    """The slices each labelled series trains on (see the module);
    `visibility`: (series, target) -> each slice's share of a masked target,
    its peak's height there (else the Gaussian across slices)."""
    rng = np.random.default_rng(seed)
    position = {t: k for k, t in enumerate(targets)}
    visibility = visibility or {}
    samples = []
    for series, group in points.groupby("series", sort=True):
        volume = inputs.volumes.get(series)
        if volume is None:
            continue
        sx, sy = inputs.scale(series)
        labelled = []
        for row in group.itertuples():
            at = volume.position_of(row.instance)
            if at is not None and row.target in position:
                seen = visibility.get((series, row.target))
                labelled.append((position[row.target], row.x * sx, row.y * sy, at, seen))
        if not labelled:
            continue
        near = {
            s
            for *_, at, _ in labelled
            for s in range(at - NEAR, at + NEAR + 1)
            if 0 <= s < len(volume)
        }
        near |= {int(s) for *_, seen in labelled if seen is not None for s in np.flatnonzero(seen)}
        others = [s for s in range(len(volume)) if s not in near]
        extra = rng.permutation(others)[: settings.negatives * len({lab[3] for lab in labelled})]
        known = tuple(sorted({k for k, *_ in labelled}))
        for s in sorted(near | {int(e) for e in extra}):
            peaks = tuple(
                (k, x, y, _height(s, at, seen, settings.slice_sigma))
                for k, x, y, at, seen in labelled
            )
            samples.append(Sample(series, s, peaks, known))
    return samples


def _height(s: int, at: int, seen: np.ndarray | None, sigma: float) -> float:
    if seen is not None and len(seen) > s:
        return float(seen[s])
    return heatmaps.slice_weight(s - at, sigma)


def _batch_maker(samples: list[Sample], inputs: SliceInputs, targets: int, sigma: float):
    size = inputs.size // STRIDE

    def make(rows):
        x = np.stack([inputs.get(samples[i].series, samples[i].slice) for i in rows])
        y = np.zeros((len(rows), size, size, 2 * targets), np.float32)
        for b, i in enumerate(rows):
            for k, px, py, amplitude in samples[i].peaks:
                y[b, :, :, k] = np.maximum(
                    y[b, :, :, k], amplitude * heatmaps.gaussian(size, px, py, sigma)
                )
            y[b, :, :, [targets + k for k in samples[i].known]] = 1.0
        return x, y

    return make


def train(points, targets, inputs, settings: LocaliserConfig, out, seed: int, what: str,
          weights_dir: str = "weights", visibility: dict | None = None) -> dict:  # fmt: skip
    """Fit one kind's localiser on `points` (the fold's training units); saved
    in `out`; pretrained weights from `weights_dir` (model.weights_dir)."""
    keras.utils.set_random_seed(seed)
    samples = training_samples(points, targets, inputs, settings, seed, visibility)
    model = build_localiser(
        ModelConfig(backbone=settings.backbone, weights=settings.weights, weights_dir=weights_dir),
        settings.image_size,
        len(targets),
        settings.decoder_units,
    )
    model.compile(keras.optimizers.Adam(settings.learning_rate), HeatmapLoss(len(targets)))
    data = Batches(
        len(samples),
        settings.batch_size,
        _batch_maker(samples, inputs, len(targets), settings.sigma),
        seed,
        shuffle=True,
    )
    write_text_atomic(Path(out) / PRIOR, json.dumps(slice_positions(points, targets, inputs)))
    record = fit_and_save(model, data, settings.epochs, out, what)
    return {**record, "samples": len(samples)}


def slice_positions(points: pd.DataFrame, targets: list[str], inputs: SliceInputs) -> dict:
    """Target -> the relative positions (0 first slice .. 1 last) it was labelled at."""
    found = {t: [] for t in targets}
    for row in points.itertuples():
        volume = inputs.volumes.get(row.series)
        at = None if volume is None else volume.position_of(row.instance)
        if at is not None and row.target in found:
            found[row.target].append(round(at / max(len(volume) - 1, 1), 4))
    return found


def read_prior(out) -> dict:
    path = Path(out) / PRIOR
    return json.loads(path.read_text()) if path.is_file() else {}


def prior_weights(positions: list[float], n: int) -> np.ndarray:
    """(n,) weights of a series' slices from the target's training positions
    (all 1 when it has none)."""
    if not positions:
        return np.ones(n)
    r = np.linspace(0, 1, n)[:, None] if n > 1 else np.zeros((1, 1))
    density = np.exp(-((r - np.asarray(positions)[None]) ** 2) / (2 * PRIOR_WIDTH**2)).sum(axis=1)
    return np.maximum(density / density.max(), PRIOR_FLOOR)


def series_heatmaps(models: list[keras.Model], inputs: SliceInputs, series: str) -> np.ndarray:
    """(S, L/2, L/2, K): every slice's heatmaps, averaged over `models` (a
    fold's one, or every fold's)."""
    volume = inputs.volumes[series]
    x = np.stack([inputs.get(series, s) for s in range(len(volume))])
    maps = [predict(m, x) for m in models]
    return np.mean(maps, axis=0)


def locate(
    models,
    priors: list[dict],
    inputs: SliceInputs,
    series: str,
    targets: list[str],
    min_score: float,
) -> list[dict]:
    """Each target's predicted slice (instance) and point in the slice's pixels
    (`priors`: each model's slice prior, pooled)."""
    volume = inputs.volumes[series]
    maps = series_heatmaps(models, inputs, series)
    sx, sy = inputs.scale(series)
    rows, cols = volume.shape
    found = []
    for k, target in enumerate(targets):
        positions = [p for prior in priors for p in prior.get(target, [])]
        s, top = heatmaps.best_slice(maps[..., k], prior_weights(positions, len(volume)))
        hit = top.score >= min_score
        if not hit:  # the centre of the series, its middle slice
            s, x, y = len(volume) // 2, cols / 2, rows / 2
        else:
            x, y = top.x / sx, top.y / sy
        found.append(
            {
                "series": series,
                "target": target,
                "slice": int(s),
                "instance": int(volume.instances[s]),
                "x": float(x),
                "y": float(y),
                "score": round(top.score, 4),
                "found": bool(hit),
                "profile": " ".join(f"{v:.3f}" for v in heatmaps.slice_profile(maps[..., k])),
            }
        )
    return found
