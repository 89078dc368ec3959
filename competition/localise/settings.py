"""The `localise:` section: the two-stage pipeline of a study-level task
(make localise, make crops, make classify): which series kind shows which
head, where the coordinates are, and how the localiser, the crops and the
crop classifier are made. Every key is documented in configs/base.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from competition.knobs import knob

COMBINE = ("mean", "max")
TRAIN_POINTS = ("labelled", "predicted", "both")
HEADER_FIELDS = ("SeriesDescription", "Modality")
MASK_FORMATS = ("nifti", "png")
SLICE_LABELS = ("none", "soft")


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
    one, a DICOM header attribute (SeriesDescription, or Modality: CT, MR)."""

    csv: str | None = "train_series_descriptions.csv"
    test_csv: str | None = "test_series_descriptions.csv"
    key: str = "series_id"  # the path field and CSV column naming a series
    column: str = "series_description"
    header: Literal[HEADER_FIELDS] = "SeriesDescription"  # read where there is no CSV
    kinds: list[SeriesKind] = field(default_factory=list)


@dataclass(frozen=True)
class CoordinatesSpec:
    """The labelled points: a row per (unit, target) with the series, the
    slice (instance number, the file's name) and x, y in its pixels. The
    target is the head column named by joining `target` columns (lower case,
    other characters as _)."""

    csv: str | None = "train_label_coordinates.csv"  # null: the points come from localise.masks
    series: str = "series_id"
    instance: str = "instance_number"
    target: list[str] = knob(["condition", "level"])
    x: str = "x"
    y: str = "y"


@dataclass(frozen=True)
class MasksSpec:
    """Segmentation masks of some training series (competition.localise.masks):
    NIfTI files <dir>/<series>.nii[.gz] or per-slice PNGs <dir>/<series>/<instance>.png.
    Each target (a head, or a head column) is the union of some mask values:
    its point is the centroid on the slice where it is largest, and how much
    of it each slice shows is that slice's visibility."""

    dir: str | None = None  # under data.root; null: no masks
    format: Literal[MASK_FORMATS] = "nifti"
    targets: dict[str, list[int]] = knob({})  # target -> the mask values it is made of
    tolerance_mm: float = knob(0.5, gt=0)  # NIfTI: how far its voxels may lie from the series'


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
    # labelled (the coordinates or masks' points, jittered), predicted (each unit's
    # out-of-fold points), both (labelled where a series has one, else predicted)
    train_points: Literal[TRAIN_POINTS] = "labelled"
    mm_by_target: dict[str, float] = knob({})  # a target's own side (an organ's size), else mm


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
    # soft: a per-slice head beside the crop's, each slice's target its visibility
    # x the unit label (the rest the first class: healthy); none: the crop's label alone
    slice_labels: Literal[SLICE_LABELS] = "none"
    slice_weight: float = knob(0.5, ge=0)  # that head's loss, beside the crop's 1
    # Slices labelled one by one (Abdominal's image_level_labels.csv: unit, series,
    # instance, what it shows): on a listed series, a slice listed for a head is that
    # unit's label, the others the first class; instead of the visibility there.
    slice_csv: str | None = None
    slice_column: str = "injury_name"
    slice_heads: dict[str, str] = knob({})  # the CSV's value -> the head it labels


@dataclass(frozen=True)
class LocaliseConfig:
    series: SeriesRouting = field(default_factory=SeriesRouting)
    coordinates: CoordinatesSpec = field(default_factory=CoordinatesSpec)
    masks: MasksSpec = field(default_factory=MasksSpec)
    localiser: LocaliserConfig = field(default_factory=LocaliserConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
