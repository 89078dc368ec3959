"""The task spec: what a competition is, as one value the kit reads.

The `task:` section of a config says what the labels are and how the model
predicts them (heads), where the label CSV, the images and the sample
submission are and what shape they have, how folds are grouped and
stratified, which metric scores a model, and how the submission is built.
Every stage reads it; none knows a competition by name. The presets in
configs/ fill it in (configs/rsna_ich.yaml is the worked example).

Checked when the config loads, with errors naming the key
(competition.task.checks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from competition.evaluation.metrics import METRIC_NAMES, METRICS
from competition.evaluation.weighted_losses import AnyOf, SoftmaxGroup
from competition.knobs import knob
from competition.template import ImageTemplate

HEAD_KINDS = ("multilabel", "binary", "multiclass", "ordinal")
LABEL_FORMATS = ("long", "wide")
TEST_LISTS = ("sample", "folder", "csv")
GROUP_SOURCES = ("none", "column", "dicom")
UNIT_LEVELS = ("image", "series", "study", "patient")
UNIT_SOURCES = ("folder", "dicom", "csv")
# DICOM header keywords folds can be grouped by -> the header index column holding them.
DICOM_GROUP_KEYS = {
    "PatientID": "patient_id",
    "StudyInstanceUID": "study_id",
    "SeriesInstanceUID": "series_id",
}
SUBMISSION_LAYOUTS = ("wide", "long")
MISSING_LABELS = ("error", "mask")
REDUCTIONS = ("mean", "max")
POSTPROCESS_STEPS = ("derived", "clip")
MONITORS = ("metric", "loss")
IMAGE_FORMATS = {
    ".dcm": "dicom",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
}  # ending -> reader
HDF5_SUFFIXES = (".hdf5", ".h5")  # a split "folder" that is one file of encoded images
# The named groups a long label CSV's ID pattern must have.
LONG_GROUPS = ("image_id", "label")
# Head and task names become Keras layer and model names.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Derived:
    """A label column that is the maximum of others (RSNA's `any`)."""

    name: str
    max_of: list[str]


@dataclass(frozen=True)
class Head:
    """One output of the model: its label columns, and how they are predicted.

    multilabel: one sigmoid per column; binary: one column, one sigmoid;
    multiclass: a softmax over `classes` for each column of class values (a
    grade per level: 25 three-way heads in one), or, without `classes`, one
    softmax over its columns, which hold the classes one-hot (an organ's
    healthy/low/high columns); ordinal: one column of ordered class values,
    one regression output decoded to a class by thresholds.

    A missing label (an empty cell, where task.labels.missing is mask) is NaN
    in the targets and left out of the loss and the metric."""

    name: str
    kind: Literal[HEAD_KINDS]
    columns: list[str]
    # sigmoid heads: per column, the weight of a 0 label (of every label without
    # positive_weights); multiclass: per class, the weight of a true class; None = 1s
    loss_weights: list[float] | None = None
    classes: list[int | float | str] | None = None  # multiclass, ordinal: the values, in order
    positive_weights: list[float] | None = None  # sigmoid heads: per column, a 1 label's weight

    @property
    def onehot(self) -> bool:
        """A multiclass head whose columns are its classes, one-hot."""
        return self.kind == "multiclass" and self.classes is None

    @property
    def class_count(self) -> int:
        return len(self.columns) if self.onehot else len(self.classes or [])

    @property
    def outputs(self) -> list[str]:
        """Names of the model outputs this head makes."""
        if self.kind == "multiclass" and not self.onehot:
            return [f"{column}={c}" for column in self.columns for c in self.classes]
        return list(self.columns)

    @property
    def softmaxes(self) -> list[slice]:
        """Each softmax's outputs, within the head's (multiclass heads)."""
        if self.kind != "multiclass":
            return []
        width = self.class_count
        return [slice(i, i + width) for i in range(0, len(self.outputs), width)]

    @property
    def weights(self) -> np.ndarray:
        """The loss weights: per output (sigmoid: of a 0 label), per class (multiclass)."""
        count = self.class_count if self.kind == "multiclass" else len(self.outputs)
        if self.loss_weights is None:
            return np.ones(count, dtype=np.float32)
        return np.asarray(self.loss_weights, dtype=np.float32)

    @property
    def label_weights(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Sigmoid heads whose weights depend on the label: (weights of a 0, of a 1)."""
        if self.positive_weights is None:
            return None
        return self.weights, np.asarray(self.positive_weights, dtype=np.float32)

    @property
    def probabilities(self) -> bool:
        """Outputs in [0, 1] (sigmoid or softmax), as opposed to a regression value."""
        return self.kind != "ordinal"

    def allowed_values(self) -> list:
        if self.kind in ("multilabel", "binary") or self.onehot:
            return [0, 1]
        return list(self.classes)

    @property
    def text_classes(self) -> bool:
        """Classes written as text in the label CSV (`Normal/Mild`)."""
        return any(isinstance(c, str) for c in self.classes or [])

    def class_positions(self, values: np.ndarray) -> np.ndarray:
        """Class values (N, columns) -> their positions in `classes`, NaN where missing."""
        import pandas as pd

        lookup = {c: float(i) for i, c in enumerate(self.classes)}
        flat = pd.Series(np.asarray(values, dtype=object).ravel())
        return flat.map(lookup).to_numpy(np.float64).reshape(np.shape(values))

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Label values (N, columns) -> training targets (N, outputs) float32,
        NaN where a label is missing (a whole softmax's outputs)."""
        values = np.asarray(values).reshape(len(values), -1)
        if self.kind in ("multilabel", "binary") or self.onehot:
            return values.astype(np.float32)
        index = self.class_positions(values)
        if self.kind == "ordinal":
            return index.astype(np.float32)
        known = ~np.isnan(index)
        onehot = np.eye(self.class_count, dtype=np.float32)[np.where(known, index, 0).astype(int)]
        onehot[~known] = np.nan
        return onehot.reshape(len(values), -1)

    @property
    def decoded_columns(self) -> list[str]:
        """What decode's columns are: the label columns, or the outputs
        (`column=class`) of a multiclass head of several columns, which keeps
        its probabilities."""
        if self.kind == "multiclass" and not self.onehot and len(self.columns) > 1:
            return self.outputs
        return list(self.columns)

    def decode(self, outputs: np.ndarray, thresholds: Sequence[float] | None = None) -> np.ndarray:
        """Model outputs (N, outputs) -> submission values (N, columns):
        probabilities as they are (sigmoids; a one-hot softmax, one column per
        class), a class value for a multiclass head of one column (argmax)
        and for ordinal heads (the regression value cut by `thresholds`, by
        default half-way between class positions). A multiclass head of
        several columns keeps its probabilities (N, outputs)."""
        if self.kind in ("multilabel", "binary") or self.onehot:
            return outputs
        classes = np.asarray(self.classes)
        if self.kind == "multiclass":
            if len(self.columns) > 1:
                return outputs
            return classes[np.argmax(outputs, axis=1)][:, None]
        cuts = np.arange(len(classes) - 1) + 0.5 if thresholds is None else np.asarray(thresholds)
        return classes[np.searchsorted(cuts, outputs[:, 0])][:, None]


@dataclass(frozen=True)
class LabelsSpec:
    csv: str = "train.csv"
    format: Literal[LABEL_FORMATS] = "wide"
    id_column: str = "image_id"
    value_column: str = "Label"
    id_pattern: str = r"(?P<image_id>.+)_(?P<label>[^_]+)"
    derived: list[Derived] = field(default_factory=list)
    # an empty label cell: an error, or a label left out of the loss and metric
    missing: Literal[MISSING_LABELS] = "error"


@dataclass(frozen=True)
class ImagesSpec:
    path: str = "{split_dir}/{image_id}.dcm"
    train_dir: str = "train"
    test_dir: str = "test"
    test_list: Literal[TEST_LISTS] = "sample"
    test_csv: str | None = None


@dataclass(frozen=True)
class GroupingSpec:
    by: Literal[GROUP_SOURCES] = "none"
    key: str | None = None


@dataclass(frozen=True)
class UnitSpec:
    """What one label row describes: an image (one sample per image file),
    or a series, study or patient (one sample per unit: a stack of its
    slices). The label CSV's ID column holds the unit's ID; an image finds
    its unit by a folder level of task.images.path named as that column
    (`folder`), by a DICOM header field (`dicom`: `key`), or through a CSV
    (`csv`: the file below data.root, its `key` column matched against the
    image's field of that name, in the path template or, for the DICOM
    keys, the header, and its label-ID column naming the unit)."""

    level: Literal[UNIT_LEVELS] = "image"
    by: Literal[UNIT_SOURCES] = "folder"
    key: str | None = None  # dicom: StudyInstanceUID, SeriesInstanceUID or PatientID; csv: a column
    csv: str | None = None  # by csv: e.g. train_series_meta.csv (series_id -> patient_id)


@dataclass(frozen=True)
class AnyOfSpec:
    """The binary term grouped_log_loss derives from softmax heads (see
    competition.evaluation.weighted_losses.AnyOf): off while `name` is null."""

    name: str | None = None
    heads: list[str] = field(default_factory=list)
    absent_class: int | None = None  # class position: the event is any other class
    event_class: int | None = None  # class position: the event is this class
    weights: list[float] | None = None  # [label 0, label 1]; null: the members' largest
    normalised: bool = True  # from the renormalised probabilities, or the raw outputs


@dataclass(frozen=True)
class MetricSpec:
    name: Literal[METRIC_NAMES] = "log_loss"
    head: str | None = None
    weights: list[float] | None = None
    monitor: Literal[MONITORS] = "metric"
    group_by: list[str] | None = None
    # grouped_log_loss: group name -> the multiclass heads it pools (empty: a group per head)
    groups: dict[str, list[str]] = field(default_factory=dict)
    any_of: AnyOfSpec = field(default_factory=AnyOfSpec)
    min_tpr: float = knob(0.8, gt=0, le=1)  # partial_auc: the true-positive rate it starts at


@dataclass(frozen=True)
class ReduceSpec:
    """Several images make one submission row (a breast's views)."""

    key: str | None = None
    how: Literal[REDUCTIONS] = "mean"


@dataclass(frozen=True)
class SubmissionSpec:
    sample: str = "sample_submission.csv"
    layout: Literal[SUBMISSION_LAYOUTS] = "wide"
    id_column: str = "image_id"
    value_column: str = "Label"
    postprocess: list[Literal[POSTPROCESS_STEPS]] = field(default_factory=lambda: ["clip"])
    clip: float = 1e-4
    # long layout, one column per class of the row's label (Lumbar 2024's
    # row_id,normal_mild,moderate,severe): the heads' class probabilities, in class order
    value_columns: list[str] | None = None
    reduce: ReduceSpec = field(default_factory=ReduceSpec)


@dataclass(frozen=True)
class TaskSpec:
    name: str = "task"
    labels: LabelsSpec = field(default_factory=LabelsSpec)
    images: ImagesSpec = field(default_factory=ImagesSpec)
    grouping: GroupingSpec = field(default_factory=GroupingSpec)
    unit: UnitSpec = field(default_factory=UnitSpec)
    stratify: str | None = None
    heads: list[Head] = field(default_factory=list)
    metric: MetricSpec = field(default_factory=MetricSpec)
    submission: SubmissionSpec = field(default_factory=SubmissionSpec)

    # --- what the spec implies ------------------------------------------------

    @property
    def label_columns(self) -> list[str]:
        """Every label column a head predicts, in head order."""
        return [c for head in self.heads for c in head.columns]

    @property
    def outputs(self) -> list[str]:
        """The model's output columns, in order (see Head.outputs)."""
        return [o for head in self.heads for o in head.outputs]

    def head_slices(self) -> list[tuple[Head, slice]]:
        """Each head with the slice of the model's outputs it owns."""
        found, start = [], 0
        for head in self.heads:
            found.append((head, slice(start, start + len(head.outputs))))
            start += len(head.outputs)
        return found

    def head_slice(self, name: str) -> slice:
        return next(s for head, s in self.head_slices() if head.name == name)

    @property
    def id_field(self) -> str:
        """The image ID's name in the CSVs and the path template (a unit's,
        for a series- or study-level task)."""
        return self.labels.id_column if self.labels.format == "wide" else LONG_GROUPS[0]

    @property
    def per_unit(self) -> bool:
        """A sample is a series, study or patient: a stack of its slices."""
        return self.unit.level != "image"

    @property
    def sample_noun(self) -> str:
        """What a sample is called in messages: images, or the units."""
        return {"image": "images", "series": "series", "study": "studies"}.get(
            self.unit.level, "patients"
        )

    def image_id_of(self, fields: dict[str, str]) -> str:
        """An image file's ID from its path fields: the ID field, or, when
        a sample is a unit, every field joined (a slice's name alone, `12`,
        repeats across studies)."""
        if not self.per_unit:
            return fields[self.template.id_field]
        return "_".join(fields[name] for name in self.template.fields if name != "split_dir")

    @property
    def template(self) -> ImageTemplate:
        return ImageTemplate(self.images.path, self.id_field)

    @property
    def unit_in_path(self) -> bool:
        """The path template names the unit (a folder level): not when a
        unit is found by a header field or a CSV."""
        return not self.per_unit or self.unit.by == "folder"

    @property
    def image_format(self) -> str:
        """dicom, png, jpeg (the template's ending), or hdf5 (split folders
        that are HDF5 files of encoded images, each read by its first bytes)."""
        if self.in_hdf5:
            return "hdf5"
        return IMAGE_FORMATS[Path(self.images.path).suffix.lower()]

    @property
    def in_hdf5(self) -> bool:
        return Path(self.images.train_dir).suffix.lower() in HDF5_SUFFIXES

    @property
    def metric_head(self) -> Head:
        wanted = self.metric.head or self.heads[0].name
        return next(head for head in self.heads if head.name == wanted)

    @property
    def metric_weights(self) -> list[float] | None:
        """The weights the metric averages its columns with (weighted metrics)."""
        if not METRICS[self.metric.name].weighted:
            return None
        if self.metric.weights is not None:
            return list(self.metric.weights)
        return self.metric_head.weights.tolist()

    @property
    def lower_is_better(self) -> bool:
        return METRICS[self.metric.name].lower_is_better

    @property
    def monitor(self) -> str:
        """What checkpoints and early stopping watch, as Keras logs it."""
        return "val_loss" if self.metric.monitor == "loss" else f"val_{self.metric.name}"

    @property
    def monitor_lower_is_better(self) -> bool:
        return self.metric.monitor == "loss" or self.lower_is_better

    @property
    def derived_names(self) -> list[str]:
        return [d.name for d in self.labels.derived]

    @property
    def stratify_column(self) -> str:
        """The column folds are stratified on (default: a single-column metric head's)."""
        return self.stratify or self.metric_head.columns[0]

    def targets(self, labels) -> np.ndarray:
        """A label table (one row per image, the label columns) -> the
        training targets (N, outputs) float32."""
        parts = [head.encode(labels[head.columns].to_numpy()) for head in self.heads]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def default_thresholds(self, head: Head) -> list[float] | None:
        """An ordinal head's cuts half-way between class positions."""
        if head.kind != "ordinal":
            return None
        return (np.arange(len(head.classes) - 1) + 0.5).tolist()

    def _softmax_members(self, names: Sequence[str]) -> tuple[slice, ...]:
        """The output slices of every softmax of the heads named."""
        parts = {head.name: (head, part) for head, part in self.head_slices()}
        return tuple(
            slice(parts[name][1].start + s.start, parts[name][1].start + s.stop)
            for name in names
            for s in parts[name][0].softmaxes
        )

    def _head(self, name: str) -> Head:
        return next(head for head in self.heads if head.name == name)

    @property
    def metric_groups(self) -> dict[str, list[str]]:
        """grouped_log_loss's groups: name -> heads (default: each multiclass head alone)."""
        if self.metric.groups:
            return dict(self.metric.groups)
        return {head.name: [head.name] for head in self.heads if head.kind == "multiclass"}

    def softmax_groups(self) -> tuple[list[SoftmaxGroup], AnyOf | None]:
        """The structure grouped_log_loss scores the outputs with."""
        groups = [
            SoftmaxGroup(
                name, self._softmax_members(heads), tuple(self._head(heads[0]).weights.tolist())
            )
            for name, heads in self.metric_groups.items()
        ]
        spec = self.metric.any_of
        if spec.name is None:
            return groups, None
        weights = [
            tuple(self._head(name).weights.tolist())
            for name in spec.heads
            for _ in self._head(name).softmaxes
        ]
        any_of = AnyOf(
            spec.name,
            self._softmax_members(spec.heads),
            tuple(weights),
            absent_class=spec.absent_class,
            event_class=spec.event_class,
            weights=None if spec.weights is None else tuple(spec.weights),
            normalised=spec.normalised,
        )
        return groups, any_of

    def score(self, y_true: np.ndarray, y_pred: np.ndarray, thresholds=None) -> float:
        """The competition metric on the metric head's outputs, or on every
        head's for a metric over the whole task (`thresholds`: an ordinal
        head's cuts; default half-way between classes)."""
        metric = METRICS[self.metric.name]
        if metric.whole_task:
            groups, any_of = self.softmax_groups()
            return metric.score(y_true, y_pred, groups=groups, any_of=any_of)
        head = self.metric_head
        part = self.head_slice(head.name)
        return metric.score(
            y_true[:, part],
            y_pred[:, part],
            weights=self.metric_weights,
            thresholds=thresholds if thresholds is not None else self.default_thresholds(head),
            label_weights=head.label_weights,
            min_tpr=self.metric.min_tpr,
        )


def needed_label_columns(task: TaskSpec) -> dict[str, str]:
    """Label CSV column -> the config key that first asks for it."""
    labels = task.labels
    asked = [(labels.id_column, "task.labels.id_column")]
    if labels.format == "long":
        return dict([*asked, (labels.value_column, "task.labels.value_column")])
    derived = set(task.derived_names)
    for i, head in enumerate(task.heads):
        asked += [(c, f"task.heads[{i}].columns") for c in head.columns if c not in derived]
    if not task.per_unit:  # a unit's slices are found from the files, not the CSV
        asked += [(f, "task.images.path") for f in task.template.fields if f != "split_dir"]
    if task.grouping.by == "column":
        asked.append((task.grouping.key, "task.grouping.key"))
    if task.stratify and task.stratify not in set(task.label_columns) | derived:
        asked.append((task.stratify, "task.stratify"))
    asked += [(c, "task.metric.group_by") for c in task.metric.group_by or []]
    needed: dict[str, str] = {}
    for column, key in asked:
        needed.setdefault(column, key)
    return needed
