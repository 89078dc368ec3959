"""A training kit for medical-image Kaggle competitions on TensorFlow / Keras 3.

The public API, in data-flow order (each name is imported on first use, so
`import competition` loads neither TensorFlow nor the image stack):

    load_config, Config, TaskSpec        the config and the competition's task spec
    load_hu, read_header, DicomReadError read DICOM files
    read_labels                          the label CSV -> one row per image
    DataGenerator                        a keras.utils.PyDataset over image IDs
    build_model, load_checkpoint         the model factory (backbone + task heads)
    METRICS, weighted_log_loss, score    metrics (NumPy) and scoring for a task
    train_folds, predict_and_submit      the training and prediction stages
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_config": "competition.config",
    "Config": "competition.config",
    "TaskSpec": "competition.task",
    "load_hu": "competition.data.dicom",
    "read_header": "competition.data.dicom",
    "DicomReadError": "competition.data.dicom",
    "read_labels": "competition.data.labels",
    "DataGenerator": "competition.data.generator",
    "build_model": "competition.training.model",
    "load_checkpoint": "competition.training.model",
    "METRICS": "competition.evaluation.metrics",
    "weighted_log_loss": "competition.evaluation.metrics",
    "score": "competition.evaluation.scores",
    "train_folds": "competition.training.fit",
    "predict_and_submit": "competition.inference.predict",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'competition' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
