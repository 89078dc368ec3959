"""The `localise:` section: the two-stage pipeline of a study-level task
(make localise, make crops, make classify): which series kind shows which
head, where the coordinates are, and how the localiser, the crops and the
crop classifier are made. Every key is documented in configs/base.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from competition.knobs import knob

COMBINE = ("mean", "max")
TRAIN_POINTS = ("labelled", "predicted")


@dataclass(frozen=True)
class SeriesKind:
    """A kind of series in a study (Sagittal T1, Axial T2), the heads it shows."""

    name: str
    match: list[str]  # series descriptions (case and spacing ignored) of this kind
    heads: list[str]
    combine: Literal[COMBINE] = "mean"  # several series of the kind in one unit


@dataclass(frozen=True)
class SeriesRouting:
    """Where each series' kind is read: a CSV (train and test) or, without
    one, the DICOM header's SeriesDescription."""

    csv: str | None = "train_series_descriptions.csv"
    test_csv: str | None = "test_series_descriptions.csv"
    key: str = "series_id"  # the path field and CSV column naming a series
    column: str = "series_description"
    kinds: list[SeriesKind] = field(default_factory=list)


@dataclass(frozen=True)
class CoordinatesSpec:
    """The labelled points: a row per (unit, target) with the series, the
    slice (instance number, the file's name) and x, y in its pixels. The
    target is the head column named by joining `target` columns (lower case,
    other characters as _)."""

    csv: str = "train_label_coordinates.csv"
    series: str = "series_id"
    instance: str = "instance_number"
    target: list[str] = knob(["condition", "level"])
    x: str = "x"
    y: str = "y"


@dataclass(frozen=True)
class LocaliserConfig:
    image_size: int = knob(96, ge=32)
    sigma: float = knob(2.0, gt=0)  # the heatmap's Gaussian, in the localiser's pixels
    slice_sigma: float = knob(1.0, gt=0)  # ... across slices, in slices
    backbone: str = "tiny_cnn"
    weights: str | None = None
    decoder_units: int = knob(32, ge=4)
    epochs: int = knob(12, ge=1)
    batch_size: int = knob(16, ge=1)
    learning_rate: float = knob(2e-3, gt=0)
    negatives: int = knob(2, ge=0)  # slices without a labelled point, per labelled slice
    min_score: float = knob(0.1, ge=0, le=1)  # a peak below: not found, the centre crop


@dataclass(frozen=True)
class CropConfig:
    mm: float = knob(24.0, gt=0)  # the crop's side, from PixelSpacing
    size: int = knob(32, ge=8)  # ... resampled to size x size
    slices: int = knob(1, ge=0)  # +-k slices around the point's
    jitter_mm: float = knob(3.0, ge=0)  # training crops shifted by up to this much
    train_points: Literal[TRAIN_POINTS] = "labelled"


@dataclass(frozen=True)
class ClassifierConfig:
    backbone: str = "tiny_cnn"
    weights: str | None = None
    pooling: Literal["attention", "gru", "lstm"] = "attention"
    units: int = knob(32, ge=4)
    dropout: float = knob(0.2, ge=0, le=0.9)
    epochs: int = knob(12, ge=1)
    batch_size: int = knob(32, ge=1)
    learning_rate: float = knob(2e-3, gt=0)
    whole_slices: int = knob(12, ge=2)  # the whole-series baseline: T slices per series


@dataclass(frozen=True)
class LocaliseConfig:
    series: SeriesRouting = field(default_factory=SeriesRouting)
    coordinates: CoordinatesSpec = field(default_factory=CoordinatesSpec)
    localiser: LocaliserConfig = field(default_factory=LocaliserConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
