"""What a finished fold records in metrics.json, read without TensorFlow
(the cluster's driver and the submission's assembly read it too)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METRICS = "metrics.json"
# The fold's mean training target per output: its baseline score, and the
# prediction for an image that cannot be read. Folds trained before wrote
# it under the other names.
TRAINING_MEAN = "training_mean"
_EARLIER_NAMES = ("constant_prediction", "prevalence")


def read_metrics(out: Path) -> dict:
    """A finished fold's metrics.json."""
    return json.loads((Path(out) / METRICS).read_text())


def training_mean(metrics: dict, outputs: list[str]) -> np.ndarray:
    """A finished fold's mean training target, in `outputs` order."""
    found = next(
        metrics[key] for key in (TRAINING_MEAN, *_EARLIER_NAMES) if metrics.get(key) is not None
    )
    return np.array([found[name] for name in outputs], dtype=np.float64)
