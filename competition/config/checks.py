"""The checks that span several keys of a Config (each key's own type and
range are the schema's), and the task's files when they are there."""

from __future__ import annotations

import re
from pathlib import Path

from competition.augment.spec import check_augment, placement
from competition.backend import chosen
from competition.config.sections import Config
from competition.data.pixelspec import DICOM_ONLY
from competition.errors import ConfigError
from competition.inference.ensemble import PROBABILITY_ONLY
from competition.task.checks import check_task, check_task_files
from competition.training.backbones import ALIASES, APPLICATIONS, is_known


def check_fold(fold: int, k: int) -> int:
    """A fold number that exists for folds.k = k."""
    if not 0 <= fold < k:
        raise ConfigError(f"fold must be in 0..{k - 1} (folds.k={k}). Received: fold={fold}")
    return fold


def _check_preprocess(config: Config) -> None:
    preprocess = config.preprocess
    size = preprocess.image_size
    if isinstance(size, list) and (len(size) != 2 or min(size) < 8):
        raise ConfigError(
            "Config key 'preprocess.image_size' expects rows = cols (>= 8) or [rows, cols], "
            f"each >= 8. Received: {size!r}"
        )
    image_format = config.task.image_format
    if preprocess.mode in DICOM_ONLY and image_format != "dicom":
        raise ConfigError(
            f"Config key 'preprocess.mode' {preprocess.mode} reads DICOM headers; the task's "
            f"images are {image_format} (task.images.path). Use color or gray. "
            f"Received: {preprocess.mode!r}"
        )
    natural = {"ct_windows": len(preprocess.windows), "color": 3}.get(preprocess.mode, 1)
    if preprocess.channels not in (None, natural) and natural != 1 and preprocess.channels != 1:
        raise ConfigError(
            f"Config key 'preprocess.channels' can be {natural} (the {preprocess.mode} channels), "
            f"1 (their gray average) or null for mode {preprocess.mode}. "
            f"Received: {preprocess.channels!r}"
        )
    _check_neighbors(config)


def _check_neighbors(config: Config) -> None:
    """2.5D stacks need series of slices; each pick names one of a slice's channels."""
    preprocess = config.preprocess
    if preprocess.neighbors and config.task.image_format != "dicom":
        raise ConfigError(
            f"Config key 'preprocess.neighbors' stacks neighbouring slices of a series; the "
            f"task's images are {config.task.image_format} files, which do not form series. "
            f"Set it to 0. Received: {preprocess.neighbors!r}"
        )
    if preprocess.neighbor_windows is None:
        return
    channels = config.pixels.input_shape[2]
    nested = bool(preprocess.neighbor_windows) and isinstance(preprocess.neighbor_windows[0], list)
    lists = preprocess.neighbor_windows if nested else [preprocess.neighbor_windows]
    width = 2 * preprocess.neighbors + 1
    if nested and len(lists) != width:
        raise ConfigError(
            f"Config key 'preprocess.neighbor_windows' as a list of lists needs one list per "
            f"slice of the stack ({width} for neighbors={preprocess.neighbors}). "
            f"Received: {preprocess.neighbor_windows!r}"
        )
    if not all(lists) or any(not 0 <= c < channels for picks in lists for c in picks):
        raise ConfigError(
            f"Config key 'preprocess.neighbor_windows' picks each slice's channels by index, "
            f"0..{channels - 1} here; every slice needs at least one. "
            f"Received: {preprocess.neighbor_windows!r}"
        )


def _check_backbone(config: Config) -> None:
    name = config.model.backbone
    if not is_known(name):
        raise ConfigError(
            "Config key 'model.backbone' expects a keras.applications name "
            f"({', '.join(APPLICATIONS)}), one of {', '.join(ALIASES)}, tiny_cnn, or "
            "hub:<folder of a KerasHub preset>. "
            f"Received: {name!r} (make backbones lists them)"
        )


def _check_label_smoothing(config: Config) -> None:
    kinds = {head.kind for head in config.task.heads} - {"ordinal"}
    for kind, epsilon in config.train.label_smoothing.items():
        if kind not in kinds or not 0 <= epsilon < 1:
            raise ConfigError(
                f"Config key 'train.label_smoothing.{kind}' expects a head kind of this task "
                f"({', '.join(sorted(kinds))}) -> epsilon in [0, 1). Received: "
                f"{kind}: {epsilon!r}"
            )


def _check_metadata(config: Config) -> None:
    """A metadata branch needs a row of columns per image, in the label CSV
    and in a test CSV, and images the labels are not mixed across."""
    model, task = config.model, config.task
    named = [*model.metadata_numeric, *model.metadata_categorical]
    if not named:
        return
    key = "model.metadata_numeric / model.metadata_categorical"
    if len(set(named)) != len(named):
        raise ConfigError(f"Config keys {key} name a column twice: {named}")
    problem = None
    if task.per_unit:
        problem = f"the task's samples are {task.unit.level}s, not single images"
    elif task.labels.format != "wide":
        problem = "the label CSV is long (a row per label, no per-image columns)"
    elif task.images.test_list != "csv":
        problem = "the test images are not listed in a test CSV (task.images.test_list: csv)"
    elif placement(config.augment).mixing:
        problem = "MixUp / CutMix mix images, and a metadata vector cannot be mixed with them"
    if problem:
        raise ConfigError(f"Config keys {key} name {named}, but {problem}.")


def _check_sample_weights(config: Config) -> None:
    """Weights by 0/1 label column, each >= 1 (a sample is never drawn less than once a pass)."""
    yes_no = [c for h in config.task.heads if h.kind in ("multilabel", "binary") for c in h.columns]
    for column, weight in config.train.sample_weights.items():
        if column not in yes_no:
            raise ConfigError(
                f"Config key 'train.sample_weights' names {column!r}, which is not a 0/1 label "
                f"column of the task. Expected one of: {', '.join(yes_no) or '(none)'}"
            )
        if weight != "balanced" and weight < 1:
            raise ConfigError(
                f"Config key 'train.sample_weights.{column}' expects a weight >= 1 (draws per "
                f"pass of an image positive for it). Received: {weight}"
            )


# An experiment names a folder under runs_dir: letters, digits, '.', '_', '-', not
# starting with a dot (no '..', no hidden folder), no separator (never outside runs_dir).
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _check_experiment(name: str) -> None:
    if not EXPERIMENT_NAME.fullmatch(name):
        raise ConfigError(
            "Config key 'experiment' names a folder under runs_dir: 1 to 128 letters, digits, "
            f"'.', '_' or '-', starting with a letter or digit. Received: {name!r}"
        )


def _check_training(config: Config) -> None:
    if config.train.augment_on == "host" and config.train.use_multiprocessing:
        raise ConfigError(
            "Config key 'train.augment_on' host runs the augmentation layers (Keras, on its "
            "backend) in the loader's workers, and no Keras backend runs in forked worker "
            "processes (train.use_multiprocessing: true). Use graph or auto, or thread workers. "
            "Received: host"
        )
    if config.train.strategy == "mirrored" and chosen() == "torch":
        raise ConfigError(
            "Config key 'train.strategy' mirrored spreads a fit over several devices, which "
            "Keras does not do on PyTorch (KERAS_BACKEND=torch). Use train.strategy=none, or "
            "BACKEND=jax or tensorflow. Received: mirrored"
        )


def _check_kaggle(config: Config) -> None:
    """A Kaggle notebook has a GPU or a TPU, and its TPU image runs Keras on JAX."""
    kaggle = config.kaggle
    if kaggle.enable_tpu and kaggle.enable_gpu:
        raise ConfigError(
            "Config keys 'kaggle.enable_tpu' and 'kaggle.enable_gpu' are both true; a Kaggle "
            "notebook has one accelerator. Set kaggle.enable_gpu=false for a TPU notebook."
        )
    if kaggle.enable_tpu and kaggle.backend != "jax":
        raise ConfigError(
            "Config key 'kaggle.enable_tpu' asks for a TPU notebook, whose image runs Keras on "
            f"JAX (its TensorFlow is CPU-only). Set kaggle.backend=jax. "
            f"Received: kaggle.backend={kaggle.backend}"
        )
    if kaggle.form == "evaluation_api" and not config.task.per_unit:
        raise ConfigError(
            "Config key 'kaggle.form' evaluation_api serves predict(series_path), one call per "
            "series: it needs a series- or study-level task (task.unit.level). "
            f"Received: task.unit.level={config.task.unit.level}"
        )
    if kaggle.form == "evaluation_api" and "." not in kaggle.inference_server:
        raise ConfigError(
            "Config key 'kaggle.inference_server' expects module.Class (e.g. "
            "kaggle_evaluation.rsna_inference_server.RSNAInferenceServer). "
            f"Received: {kaggle.inference_server!r}"
        )


def _check_unit_augment(config: Config) -> None:
    """A unit's stack flips as one on the host; the image layers and the
    label mixing take single images, not stacks of slices."""
    if not config.task.per_unit:
        return
    other = [name for step in config.augment for name in step if name != "RandomFlip"]
    if other:
        raise ConfigError(
            f"Config key 'augment' can hold only RandomFlip for a {config.task.unit.level}-level "
            f"task (a unit's slices flip together; the other layers take single images). "
            f"Received: {other}"
        )


def validate(config: Config) -> None:
    """Checks that span several keys."""
    _check_experiment(config.experiment)
    for key in ("slices_per_series", "images_per_patient"):
        span = getattr(config.synth, key)
        if len(span) != 2 or not 1 <= span[0] <= span[1]:
            raise ConfigError(
                f"Config key 'synth.{key}' expects [min, max] with 1 <= min <= max. "
                f"Received: {span!r}"
            )
    if not config.predict.tta:
        raise ConfigError("Config key 'predict.tta' needs at least one entry, e.g. [identity].")
    if config.predict.folds is not None and not all(
        0 <= f < config.folds.k for f in config.predict.folds
    ):
        raise ConfigError(
            f"Config key 'predict.folds' names folds outside 0..{config.folds.k - 1} "
            f"(folds.k={config.folds.k}). Received: {config.predict.folds!r}"
        )
    for window in config.preprocess.windows:
        if len(window) != 2 or window[1] <= 0:
            raise ConfigError(
                "Config key 'preprocess.windows' expects [center, width] pairs with width > 0. "
                f"Received: {config.preprocess.windows!r}"
            )
    check_task(config.task)
    _check_preprocess(config)
    check_augment(
        config.augment,
        config.input_shape[-1],
        {head.name: head.kind for head in config.task.heads},
    )
    _check_unit_augment(config)
    _check_backbone(config)
    _check_label_smoothing(config)
    _check_sample_weights(config)
    _check_metadata(config)
    _check_training(config)
    _check_kaggle(config)
    if config.predict.ensemble in PROBABILITY_ONLY and not all(
        head.probabilities for head in config.task.heads
    ):
        raise ConfigError(
            f"Config key 'predict.ensemble' cannot be {config.predict.ensemble}: it averages "
            "log-odds, and the task has a regression (ordinal) head. Use mean or rank."
        )
    check_task_files(config.task, Path(config.data.root))
