"""The `predict:` section: which stage and folds predict the test set, the
test-time augmentation views, how folds combine, where submissions go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from competition.inference.ensemble import ENSEMBLE_METHODS
from competition.inference.tta import TTA_VIEWS
from competition.knobs import knob

ENSEMBLES = tuple(ENSEMBLE_METHODS)


@dataclass(frozen=True)
class PredictConfig:
    stage: Literal["auto", 1, 2] = "auto"
    folds: list[int] | None = None
    tta: list[Literal[TTA_VIEWS]] = knob(["identity", "hflip"])
    ensemble: Literal[ENSEMBLES] = "mean"
    batch_size: int = knob(64, ge=1)
    submissions_dir: str = "submissions"
