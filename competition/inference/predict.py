"""Inference: every fold's best checkpoint and every test-time augmentation
view in one batched `model.predict` over a DataGenerator.

The folds and the TTA views are wrapped into one Keras model whose output is
(batch, folds, views, outputs): each image is read and decoded once,
however many models and views there are. Views are averaged, then the folds
are combined (competition.inference.ensemble).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from competition.data.generator import DataGenerator, surfacing_load_errors
from competition.errors import KitError
from competition.inference.ensemble import combine_folds
from competition.inference.tta import tta_view
from competition.progress import keras_verbose
from competition.training.model import check_input_shape, load_checkpoint, metadata_vocabularies


def load_fold_model(
    path: Path, shape: tuple[int, int, int], outputs: int, name: str, safe_mode: bool = True
) -> keras.Model:
    """A fold's checkpoint, loaded in safe mode and checked against the input
    and outputs the config makes; named (nested models need distinct names)."""
    model = load_checkpoint(path, safe_mode)
    check_input_shape(model, shape, outputs, str(path))
    model.name = name
    return model


def ensemble_model(models: list[keras.Model], tta: list[str], shape) -> keras.Model:
    """One model: image -> (folds, views, outputs); with a metadata branch,
    (image, metadata) -> the same (the views turn the image alone)."""
    inputs = keras.Input(shape=shape, name="image")
    views = [tta_view(inputs, name) for name in tta]
    width = metadata_width(models[0])
    if width is None:
        per_fold = [keras.ops.stack([model(view) for view in views], axis=1) for model in models]
        return keras.Model(inputs, keras.ops.stack(per_fold, axis=1), name="ensemble")
    extra = keras.Input(shape=(width,), name="metadata")
    per_fold = [
        keras.ops.stack([model([view, extra]) for view in views], axis=1) for model in models
    ]
    return keras.Model([inputs, extra], keras.ops.stack(per_fold, axis=1), name="ensemble")


def metadata_width(model: keras.Model) -> int | None:
    """The width of a fold model's metadata input, or None without one."""
    shapes = model.input_shape
    return int(shapes[1][-1]) if isinstance(shapes, list) else None


def ensemble_vocabularies(ensemble: keras.Model) -> dict | None:
    """The folds' metadata vocabularies (one for all: the label CSV's), or None."""
    found = [metadata_vocabularies(m) for m in ensemble.layers if isinstance(m, keras.Model)]
    found = [v for v in found if v is not None]
    if any(v != found[0] for v in found[1:]):
        raise KitError("The folds' metadata branches were trained with different vocabularies")
    return found[0] if found else None


def run_ensemble(
    model: keras.Model, generator: DataGenerator, ensemble: str
) -> tuple[np.ndarray, dict[str, str]]:
    """(N, outputs): the views averaged and the folds combined as `ensemble`
    says, in the generator's image order; and the images that could not be read."""
    with surfacing_load_errors(generator):
        outputs = model.predict(generator, verbose=keras_verbose())  # (N, folds, views, outputs)
    if len(outputs) != len(generator.image_ids):
        raise KitError(
            f"predict returned {len(outputs)} rows for {len(generator.image_ids)} images"
        )
    return combine_folds(outputs.mean(axis=2), ensemble), dict(generator.failed)
