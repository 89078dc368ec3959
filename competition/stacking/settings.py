"""The `stack:` section: what the stacking stage (make stack) learns from
and its gradient-boosting settings. Every key is documented in configs/base.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from competition.knobs import knob


@dataclass(frozen=True)
class StackConfig:
    name: str = "stack"
    experiments: list[str] = knob([])
    columns: list[str] | None = None
    exclude: list[str] = knob([])
    relative: bool = True
    seeds: int = knob(3, ge=1)
    rounds: int = knob(300, ge=1)
    learning_rate: float = knob(0.05, gt=0, le=1)
    num_leaves: int = knob(15, ge=2)
    min_child_samples: int = knob(10, ge=1)
    feature_fraction: float = knob(0.8, gt=0, le=1)
    bagging_fraction: float = knob(0.8, gt=0, le=1)
    negatives_per_positive: int = knob(0, ge=0)
