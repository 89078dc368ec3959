"""A training kit for medical-image Kaggle competitions on Keras 3.

What a notebook needs, in the order it needs it (each name is imported on
first use, so `import competition` loads neither TensorFlow nor the image
stack); examples/notebook.py uses them to train a fold and submit:

    load_config, Config, TaskSpec        a config file with --set style overrides; the task spec
    prepare_data                         synthetic data, header index, folds, cache: each when stale
    fold_generators, test_generator      DataGenerators (keras.utils.PyDataset) for a plain
                                         model.fit / model.predict
    compiled_model                       the task's network, augmentation and loss, compiled
    write_submission, validate_submission
                                         the checked submission from model.predict's output
    train_folds, train_sequence_folds    the kit's fold lifecycle: checkpoints, resume, OOF, CV
    predict_and_submit                   folds x TTA (or the sequence stage) -> the submission
    DataGenerator, build_model, load_checkpoint, read_labels, load_hu, read_header
    METRICS, weighted_log_loss, score    metrics (NumPy) and scoring for a task
    KitError, ConfigError, DicomReadError
"""

from __future__ import annotations

import importlib

# name -> (module, attribute)
_EXPORTS = {
    "load_config": ("competition.config", "load_config"),
    "Config": ("competition.config", "Config"),
    "TaskSpec": ("competition.task", "TaskSpec"),
    "prepare_data": ("competition.pipeline.prepare", "ensure_data"),
    "fold_generators": ("competition.pipeline.generators", "fold_generators"),
    "test_generator": ("competition.pipeline.generators", "test_generator"),
    "compiled_model": ("competition.pipeline.train", "compiled_model"),
    "write_submission": ("competition.pipeline.assemble", "write_submission"),
    "validate_submission": ("competition.pipeline.assemble", "validate_submission"),
    "train_folds": ("competition.pipeline.train", "train_folds"),
    "train_sequence_folds": ("competition.pipeline.train_seq", "train_sequence_folds"),
    "predict_and_submit": ("competition.pipeline.predict", "predict_and_submit"),
    "DataGenerator": ("competition.data.generator", "DataGenerator"),
    "build_model": ("competition.training.model", "build_model"),
    "load_checkpoint": ("competition.training.model", "load_checkpoint"),
    "read_labels": ("competition.data.labels", "read_labels"),
    "load_hu": ("competition.data.dicom", "load_hu"),
    "read_header": ("competition.data.dicom", "read_header"),
    "METRICS": ("competition.evaluation.metrics", "METRICS"),
    "weighted_log_loss": ("competition.evaluation.metrics", "weighted_log_loss"),
    "score": ("competition.evaluation.scores", "score"),
    "KitError": ("competition.errors", "KitError"),
    "ConfigError": ("competition.errors", "ConfigError"),
    "DicomReadError": ("competition.data.dicom", "DicomReadError"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'competition' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return __all__
