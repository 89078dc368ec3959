"""The `synth:` section: which stand-in competition to write, and its size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from competition.knobs import knob
from competition.synthetic import STAND_INS


@dataclass(frozen=True)
class SynthConfig:
    generate: bool = False
    kind: Literal[STAND_INS] = "head_ct"
    seed: int = 0
    patients: int = knob(60, ge=2)
    images_per_patient: list[int] = knob([1, 4])
    max_studies_per_patient: int = knob(3, ge=1)
    multi_study_fraction: float = knob(0.25, ge=0, le=1)
    slices_per_series: list[int] = knob([20, 40])
    image_size: int = knob(512, ge=32)
    test_fraction: float = knob(0.2, ge=0, le=0.9)
    noise_hu: float = knob(5.0, ge=0)
    prevalence: dict[str, float] = knob({})
