"""The `sequence:` section: stage 2, the model over each series' slice
features (a series- or study-level task: over each unit's), and how it is
trained (the same schedule keys as `train:`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from competition.knobs import knob


@dataclass(frozen=True)
class SequenceConfig:
    rnn: Literal["gru", "lstm"] = "gru"
    layers: int = knob(2, ge=1, le=4)
    units: int = knob(64, ge=4)
    dropout: float = knob(0.2, ge=0, le=0.9)
    epochs: int = knob(15, ge=1)
    batch_size: int = knob(16, ge=1)
    learning_rate: float = knob(1e-3, gt=0)
    weight_decay: float = knob(1e-4, ge=0)
    warmup_epochs: float = knob(0.5, ge=0)
    min_lr_ratio: float = knob(0.05, ge=0, le=1)
    early_stopping_patience: int = knob(5, ge=1)
    reverse: float = knob(0.5, ge=0, le=1)
    drop_alternate: float = knob(0.2, ge=0, le=1)
    reverse_tta: bool = True
    # a series- or study-level task: every slice of a unit, padded and masked up
    # to this many (a longer unit: this many, evenly spaced)
    max_slices: int = knob(256, ge=2)
