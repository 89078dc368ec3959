"""The task spec: what a competition is, as one value every stage reads
(`spec.py`), and its checks (`checks.py`)."""

from competition.task.spec import (
    DICOM_GROUP_KEYS,
    IMAGE_FORMATS,
    Derived,
    GroupingSpec,
    Head,
    ImagesSpec,
    LabelsSpec,
    MetricSpec,
    ReduceSpec,
    SubmissionSpec,
    TaskSpec,
    UnitSpec,
    needed_label_columns,
)

__all__ = [
    "DICOM_GROUP_KEYS",
    "IMAGE_FORMATS",
    "Derived",
    "GroupingSpec",
    "Head",
    "ImagesSpec",
    "LabelsSpec",
    "MetricSpec",
    "ReduceSpec",
    "SubmissionSpec",
    "TaskSpec",
    "UnitSpec",
    "needed_label_columns",
]
