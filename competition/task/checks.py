"""The task spec's checks, run when the config loads, every error naming
the key, what it expects and the value received: `check_task` for the spec
itself, `check_task_files` for the CSV headers it names, when the files are
there."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from competition.errors import ConfigError
from competition.evaluation.metrics import METRICS
from competition.task.spec import (
    DICOM_GROUP_KEYS,
    HDF5_SUFFIXES,
    IMAGE_FORMATS,
    LONG_GROUPS,
    NAME,
    TaskSpec,
    needed_label_columns,
)

# --- checks -------------------------------------------------------------------


def _fail(key: str, expected: str, received) -> None:
    raise ConfigError(f"Config key '{key}' {expected}. Received: {received!r}")


def _check_heads(task: TaskSpec) -> None:
    if not task.heads:
        _fail(
            "task.heads",
            "needs at least one head (name, kind, columns); see configs/rsna_ich.yaml",
            [],
        )
    if not NAME.fullmatch(task.name):
        _fail("task.name", "must be a name of letters, digits and _", task.name)
    seen_names, seen_columns = set(), set()
    for i, head in enumerate(task.heads):
        key = f"task.heads[{i}]"
        if not NAME.fullmatch(head.name):
            _fail(
                f"{key}.name",
                "must be a name of letters, digits and _ (a Keras layer name)",
                head.name,
            )
        if head.name in seen_names:
            _fail(f"{key}.name", "must differ from the other heads' names", head.name)
        seen_names.add(head.name)
        if not head.columns or len(set(head.columns)) != len(head.columns):
            _fail(f"{key}.columns", "must list one or more distinct label columns", head.columns)
        repeated = seen_columns & set(head.columns)
        if repeated:
            _fail(f"{key}.columns", "must not repeat another head's columns", sorted(repeated))
        seen_columns |= set(head.columns)
        _check_head_classes(head, key)
        _check_head_weights(head, key)


def _check_head_classes(head, key: str) -> None:
    if head.kind in ("binary", "ordinal") and len(head.columns) != 1:
        _fail(f"{key}.columns", f"of a {head.kind} head must hold exactly one column", head.columns)
    if head.kind == "multiclass" and head.onehot:
        if len(head.columns) < 2:
            _fail(
                f"{key}.classes",
                "of a multiclass head must list 2 or more class values, in order (or, "
                "without classes, its columns are the classes one-hot: 2 or more)",
                head.classes,
            )
        return
    if head.kind in ("multiclass", "ordinal"):
        if not head.classes or len(head.classes) < 2 or len(set(head.classes)) != len(head.classes):
            _fail(
                f"{key}.classes",
                f"of a {head.kind} head must list 2 or more distinct class values, in order",
                head.classes,
            )
    elif head.classes is not None:
        _fail(
            f"{key}.classes",
            f"is only for multiclass and ordinal heads, not {head.kind}",
            head.classes,
        )


def _positive_numbers(values, count: int) -> bool:
    return len(values) == count and all(np.isfinite(values)) and min(values) > 0


def _check_head_weights(head, key: str) -> None:
    weights = head.loss_weights
    count = head.class_count if head.kind == "multiclass" else len(head.outputs)
    if weights is not None and not _positive_numbers(weights, count):
        per = (
            f"one per class of {head.class_count}"
            if head.kind == "multiclass"
            else (f"one per output: {head.outputs}")
        )
        _fail(f"{key}.loss_weights", f"must hold {count} positive numbers ({per})", weights)
    positive = head.positive_weights
    if positive is None:
        return
    if head.kind not in ("multilabel", "binary"):
        _fail(f"{key}.positive_weights", f"are only for sigmoid heads, not {head.kind}", positive)
    if not _positive_numbers(positive, len(head.columns)):
        _fail(
            f"{key}.positive_weights",
            f"must hold {len(head.columns)} positive numbers (a 1 label's weight per column; "
            "loss_weights holds a 0 label's)",
            positive,
        )


def _check_labels(task: TaskSpec) -> None:
    labels = task.labels
    if labels.format == "long" or task.submission.layout == "long":  # the pattern reads the IDs
        try:
            pattern = re.compile(labels.id_pattern)
        except re.error as exc:
            _fail(
                "task.labels.id_pattern", f"must be a regular expression ({exc})", labels.id_pattern
            )
        if set(LONG_GROUPS) - set(pattern.groupindex):
            _fail(
                "task.labels.id_pattern",
                "must have the named groups (?P<image_id>...) and (?P<label>...)",
                labels.id_pattern,
            )
    columns = set(task.label_columns)
    kinds = {c: head.kind for head in task.heads for c in head.columns}
    for i, derived in enumerate(labels.derived):
        key = f"task.labels.derived[{i}]"
        missing = [c for c in derived.max_of if c not in columns]
        if not derived.max_of or missing:
            _fail(
                f"{key}.max_of",
                f"must name label columns of the heads {sorted(columns)}",
                derived.max_of,
            )
        if any(
            kinds[c] not in ("multilabel", "binary")
            for c in [*derived.max_of, derived.name]
            if c in kinds
        ):
            _fail(key, "can only combine 0/1 columns (multilabel or binary heads)", derived.name)


def _check_hdf5_images(task: TaskSpec) -> None:
    """Images in HDF5 files: keyed by the image ID alone, both splits in one."""
    images = task.images
    wanted = f"{{split_dir}}/{{{task.id_field}}}"
    if images.path != wanted:
        _fail(
            "task.images.path",
            f"must be {wanted!r} when the images are in HDF5 files (train_dir "
            f"{images.train_dir!r}): the files are keyed by the image ID",
            images.path,
        )
    if Path(images.test_dir).suffix.lower() not in HDF5_SUFFIXES:
        _fail("task.images.test_dir", "must be an HDF5 file too, like train_dir", images.test_dir)


def _check_images(task: TaskSpec) -> None:
    images = task.images
    template = task.template
    if task.in_hdf5:
        _check_hdf5_images(task)
    elif Path(images.path).suffix.lower() not in IMAGE_FORMATS:
        _fail(
            "task.images.path",
            f"must end in a supported image type ({', '.join(IMAGE_FORMATS)})",
            images.path,
        )
    problem = template.problem(require_id=task.unit_in_path)
    if problem:
        _fail("task.images.path", problem, images.path)
    extra = set(template.fields) - {"split_dir", task.id_field}
    if task.labels.format == "long" and extra and not task.per_unit:  # a unit's slices: on disk
        _fail(
            "task.images.path",
            "can only name {split_dir} and {image_id} when the labels are "
            "long (the label CSV has no other columns)",
            images.path,
        )
    if images.test_list == "csv" and not images.test_csv:
        _fail(
            "task.images.test_csv",
            "must name the test CSV when task.images.test_list is csv",
            images.test_csv,
        )


def _check_grouping(task: TaskSpec) -> None:
    grouping = task.grouping
    if grouping.by == "dicom" and grouping.key not in DICOM_GROUP_KEYS:
        _fail(
            "task.grouping.key",
            f"must be one of {', '.join(DICOM_GROUP_KEYS)} when grouping by a DICOM header field",
            grouping.key,
        )
    if grouping.by == "dicom" and task.image_format != "dicom":
        _fail("task.grouping.by", "can be dicom only for DICOM images", grouping.by)
    if grouping.by == "column":
        if not grouping.key:
            _fail("task.grouping.key", "must name the CSV column to group folds by", grouping.key)
        if task.labels.format == "long":
            _fail(
                "task.grouping.by",
                "cannot be column for long labels (no other columns); use dicom or none",
                grouping.by,
            )
    if grouping.by == "none" and grouping.key is not None:
        _fail("task.grouping.key", "must be null when task.grouping.by is none", grouping.key)
    known = set(task.label_columns) | set(task.derived_names)
    if task.stratify is None and len(task.metric_head.columns) > 1:
        _fail(
            "task.stratify",
            "must name the column folds are stratified on (the metric's head "
            f"has several: {', '.join(task.metric_head.columns)})",
            None,
        )
    if task.labels.format == "long" and task.stratify is not None and task.stratify not in known:
        _fail(
            "task.stratify", f"must be a label column ({', '.join(sorted(known))})", task.stratify
        )


def _check_softmax_heads(task: TaskSpec, key: str, names, same_classes: bool) -> None:
    heads = {head.name: head for head in task.heads}
    multiclass = sorted(n for n, h in heads.items() if h.kind == "multiclass")
    if not names or any(n not in multiclass for n in names):
        _fail(key, f"must name multiclass heads ({', '.join(multiclass) or 'none'})", names)
    if same_classes and len({(heads[n].class_count, tuple(heads[n].weights)) for n in names}) > 1:
        _fail(key, "must name heads with the same classes and class weights", names)


def _check_grouped(task: TaskSpec) -> None:
    spec = task.metric
    for name, heads in task.metric_groups.items():
        _check_softmax_heads(task, f"task.metric.groups.{name}", heads, same_classes=True)
    any_of = spec.any_of
    if any_of.name is None:
        return
    _check_softmax_heads(task, "task.metric.any_of.heads", any_of.heads, same_classes=False)
    classes = min(h.class_count for h in task.heads if h.name in any_of.heads)
    chosen = [c for c in (any_of.absent_class, any_of.event_class) if c is not None]
    if len(chosen) != 1 or not 0 <= chosen[0] < classes:
        _fail(
            "task.metric.any_of",
            f"needs one of absent_class or event_class, a class position below {classes}",
            {"absent_class": any_of.absent_class, "event_class": any_of.event_class},
        )
    if any_of.weights is not None and not _positive_numbers(any_of.weights, 2):
        _fail(
            "task.metric.any_of.weights",
            "must hold 2 positive numbers (label 0, label 1)",
            any_of.weights,
        )


def _check_metric(task: TaskSpec) -> None:
    spec = task.metric
    names = [head.name for head in task.heads]
    if spec.head is not None and spec.head not in names:
        _fail("task.metric.head", f"must name a head ({', '.join(names)})", spec.head)
    head, metric = task.metric_head, METRICS[spec.name]
    if metric.whole_task:
        _check_grouped(task)
    elif spec.groups or spec.any_of.name is not None:
        _fail(
            "task.metric.groups",
            f"and any_of are for grouped_log_loss, not {spec.name}",
            spec.groups,
        )
    elif head.kind not in metric.kinds:
        _fail(
            "task.metric.name",
            f"{spec.name} scores {'/'.join(sorted(metric.kinds))} heads, but "
            f"head {head.name!r} is {head.kind}",
            spec.name,
        )
    if metric.single_column and len(head.outputs) != 1:
        _fail(
            "task.metric.head",
            f"{spec.name} scores one column; head {head.name!r} has {len(head.outputs)}",
            head.name,
        )
    if spec.weights is not None:
        if not metric.weighted:
            _fail(
                "task.metric.weights",
                f"are only for weighted metrics, not {spec.name}",
                spec.weights,
            )
        if len(spec.weights) != len(head.outputs) or min(spec.weights) <= 0:
            _fail(
                "task.metric.weights",
                f"must hold {len(head.outputs)} positive numbers, one per "
                f"column of head {head.name!r}",
                spec.weights,
            )
    if spec.group_by is not None and (not spec.group_by or task.labels.format != "wide"):
        _fail("task.metric.group_by", "must name label CSV columns (of a wide CSV)", spec.group_by)
    if spec.monitor == "metric" and not metric.in_keras:
        _fail(
            "task.metric.monitor",
            f"cannot be metric: {spec.name} has no Keras counterpart to "
            "watch during training; use loss",
            spec.monitor,
        )


def _check_reduce(task: TaskSpec) -> None:
    spec, reduce = task.submission, task.submission.reduce
    if reduce.key is None:
        return
    if task.images.test_list != "csv":
        _fail(
            "task.submission.reduce.key",
            "needs task.images.test_list csv (the test CSV maps each image to its row)",
            reduce.key,
        )
    if spec.layout != "wide" or spec.id_column != reduce.key:
        _fail(
            "task.submission.reduce.key",
            f"must be the wide sample's ID column ({spec.id_column})",
            reduce.key,
        )
    if not all(head.probabilities for head in task.heads):
        _fail(
            "task.submission.reduce.key",
            "reduces probabilities: the task has an ordinal head",
            reduce.key,
        )


def _check_submission(task: TaskSpec) -> None:
    _check_reduce(task)
    spec = task.submission
    if "derived" in spec.postprocess and not task.labels.derived:
        _fail(
            "task.submission.postprocess",
            "lists derived, but task.labels.derived declares no derived column",
            spec.postprocess,
        )
    if not 0 < spec.clip <= 0.1:
        _fail("task.submission.clip", "must be in (0, 0.1]", spec.clip)
    if spec.value_columns is not None:
        _check_class_columns(task)


def _check_class_columns(task: TaskSpec) -> None:
    """A long submission with a column per class: every head a softmax per
    column over as many classes as there are value columns."""
    spec = task.submission
    if spec.layout != "long":
        _fail("task.submission.value_columns", "is for a long submission (layout: long)",
              spec.value_columns)  # fmt: skip
    wanted = len(spec.value_columns)
    for head in task.heads:
        if head.kind != "multiclass" or head.onehot or head.class_count != wanted:
            _fail(
                "task.submission.value_columns",
                f"holds one column per class: head {head.name!r} must be multiclass with "
                f"{wanted} classes (a softmax per label column)",
                spec.value_columns,
            )


def _check_unit(task: TaskSpec) -> None:
    unit = task.unit
    if not task.per_unit:
        return
    if unit.by == "dicom":
        if unit.key not in DICOM_GROUP_KEYS:
            _fail(
                "task.unit.key",
                f"must be one of {', '.join(DICOM_GROUP_KEYS)} when units are found by a DICOM "
                "header field",
                unit.key,
            )
        if task.image_format != "dicom":
            _fail("task.unit.by", "can be dicom only for DICOM images", unit.by)
    elif unit.by == "csv":
        if not unit.csv or not unit.key:
            _fail(
                "task.unit.csv",
                "and task.unit.key must both be set when units are found through a CSV "
                "(the file, and its column matched against the images)",
                unit.csv,
            )
        named = set(task.template.fields) | set(DICOM_GROUP_KEYS)
        if unit.key not in named:
            _fail(
                "task.unit.key",
                f"must be a field of task.images.path or one of {', '.join(DICOM_GROUP_KEYS)} "
                "when units are found through a CSV",
                unit.key,
            )
    elif unit.key is not None:
        _fail("task.unit.key", "must be null when task.unit.by is folder", unit.key)
    if unit.csv is not None and unit.by != "csv":
        _fail("task.unit.csv", "is read only when task.unit.by is csv", unit.csv)
    if task.unit_in_path and len([f for f in task.template.fields if f != "split_dir"]) < 2:
        _fail(
            "task.images.path",
            f"must name a folder level and the file for a {unit.level}-level task "
            "(e.g. '{split_dir}/{StudyInstanceUID}/{slice}.dcm')",
            task.images.path,
        )
    if task.submission.reduce.key is not None or task.metric.group_by is not None:
        _fail(
            "task.unit.level",
            "is for one sample per unit: task.submission.reduce and "
            "task.metric.group_by are for images scored together",
            unit.level,
        )


def check_task(task: TaskSpec) -> None:
    """Everything about the spec that can be checked without its files."""
    _check_heads(task)
    _check_labels(task)
    _check_images(task)
    _check_unit(task)
    _check_grouping(task)
    _check_metric(task)
    _check_submission(task)


# --- against the files, when they are there ---------------------------------------


def csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV file, or None when it is not there (yet)."""
    import csv

    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        return next(csv.reader(handle), [])


def _check_header(path: Path, needed: dict[str, str]) -> None:
    header = csv_header(path)
    if header is None:
        return
    for column, key in needed.items():
        if column not in header:
            raise ConfigError(
                f"Config key '{key}' names the column {column!r}, which {path} lacks. "
                f"Its columns: {', '.join(header)}"
            )


def check_task_files(task: TaskSpec, root: Path) -> None:
    """The columns the spec names exist in the CSVs that are there."""
    _check_header(root / task.labels.csv, needed_label_columns(task))
    if task.images.test_list == "csv":
        fields = {f: "task.images.path" for f in task.template.fields if f != "split_dir"}
        if task.per_unit:  # the test CSV names the units; their slices are found on disk
            fields = {task.id_field: "task.images.path"}
        if task.submission.reduce.key:
            fields[task.submission.reduce.key] = "task.submission.reduce.key"
        _check_header(root / task.images.test_csv, fields)
    if task.submission.layout == "wide":
        sample = {task.submission.id_column: "task.submission.id_column"}
        _check_header(root / task.submission.sample, sample)
