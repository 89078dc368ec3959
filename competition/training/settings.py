"""The training stage's settings sections: the network (`model:`) and how a
fold is fitted (`train:`). Every key is documented in configs/base.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from competition.knobs import knob

PRECISIONS = ("none", "auto", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet_b0"  # a keras.applications name, an alias, tiny_cnn, hub:<folder>
    weights: str | None = None
    weights_dir: str = "weights"  # where make weights puts pretrained files (checked by checksum)
    input_adapter: Literal["none", "repeat", "project"] = "none"
    pooling: Literal["avg", "max", "gem"] = "avg"
    dropout: float = knob(0.2, ge=0, le=0.9)
    safe_mode: bool = True
    # a metadata branch (competition.data.metadata): label / test CSV columns
    metadata_numeric: list[str] = knob([])
    metadata_categorical: list[str] = knob([])
    metadata_units: int = knob(32, ge=1)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = knob(4, ge=1)
    batch_size: int = knob(32, ge=1)
    learning_rate: float = knob(1e-3, gt=0)
    weight_decay: float = knob(1e-4, ge=0)
    warmup_epochs: float = knob(0.5, ge=0)
    min_lr_ratio: float = knob(0.05, ge=0, le=1)
    schedule: Literal["cosine", "onecycle"] = "cosine"
    freeze_epochs: int = knob(0, ge=0)  # epochs whose backbone gets no gradient (heads warm up)
    # head kind (multilabel, binary, multiclass) -> epsilon: targets pulled towards uniform
    label_smoothing: dict[str, float] = knob({})
    early_stopping_patience: int = knob(3, ge=1)
    # an exponential moving average of the weights (its momentum, e.g. 0.999; 0:
    # off): validation, checkpoints and the saved model use the averaged weights
    ema: float = knob(0.0, ge=0, le=0.99999)
    accumulate: int = knob(1, ge=1)  # batches whose gradients make one update
    augment_on: Literal["auto", "graph", "host"] = "auto"
    workers: int = knob(2, ge=0)
    use_multiprocessing: bool = False
    max_queue_size: int = knob(10, ge=1)
    mixed_precision: Literal[PRECISIONS] = "auto"
    jit_compile: bool | Literal["auto"] = "auto"
    strategy: Literal["auto", "none", "mirrored"] = "auto"
    steps_per_execution: int = knob(1, ge=1)
    steps_per_epoch: int = knob(0, ge=0)
    # label column -> draws per pass of a positive, or `balanced`: as many positive
    # draws as negatives in the fold's training rows (1:1 batches on average)
    sample_weights: dict[str, float | Literal["balanced"]] = knob({})


SERIES_POOLING = ("gru", "lstm", "attention")
SERIES_SPACING = ("resample", "native")


@dataclass(frozen=True)
class SliceLabelsConfig:
    """series.slice_labels: labels of single slices where a competition has
    them (Aneurysm's train_localizers.csv: a row per aneurysm, its slice and
    location), for an auxiliary per-slice head trained beside the unit's
    (competition.data.slice_labels); off while `csv` is null."""

    csv: str | None = None  # under data.root: unit ID column, slice_column, label_column
    slice_column: str = "SOPInstanceUID"  # the slice: its file's name within the unit
    label_column: str = "location"  # a label column of the unit's sigmoid head
    within: int = knob(1, ge=0)  # slices each side of a labelled one that show it too
    weight: float = knob(0.5, ge=0)  # the auxiliary loss, beside the unit loss's 1


@dataclass(frozen=True)
class SeriesConfig:
    """series: the model of a series- or study-level task (task.unit): the
    backbone on each of `slices` slices with shared weights, then a
    bidirectional GRU or LSTM, or attention pooling, over them."""

    slices: int = knob(16, ge=1)  # T: slices per unit, evenly spaced along the body axis
    # resample: T evenly spaced over the unit (a short one's slices repeated in
    # place); native: T consecutive slices from its middle (a short one edge-padded)
    spacing: Literal[SERIES_SPACING] = "resample"
    pooling: Literal[SERIES_POOLING] = "attention"  # measured: docs/series.md
    units: int = knob(64, ge=2)  # recurrent units per direction (attention: its width)
    dropout: float = knob(0.2, ge=0, le=0.9)  # on the per-slice features
    slice_labels: SliceLabelsConfig = field(default_factory=SliceLabelsConfig)
