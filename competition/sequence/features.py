"""Stage-1 features for the sequence stage: for each image, the fold's CNN's
pooled features before the head (the embedding, float16) and its logits,
averaged over the TTA views, in `runs/<exp>/fold<k>/features/<split>.npz`.

Which images, and how (the leakage scheme, see the README): the fold's own
training images are embedded under the training augmentation (the CNN has
seen them, so plain embeddings would be cleaner than those of unseen
images; augmented ones narrow that gap), its validation images and the test
images plainly. Nothing of fold k's validation labels is read.

A features file is reused when it was made from the same checkpoint (size
and modification time), views, augmentation and images (`made_from`);
otherwise made again, atomically (competition.pipeline.train_seq).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from competition.data.generator import DataGenerator, surfacing_load_errors
from competition.fileio import atomic_path
from competition.inference.tta import tta_view
from competition.progress import keras_verbose
from competition.task import TaskSpec

FOLDER = "features"
EPS = 1e-6


@dataclass(frozen=True)
class Features:
    """Per image (in `ids` order): embedding (D,) float16, logits (O,) float32."""

    ids: np.ndarray
    embeddings: np.ndarray
    logits: np.ndarray
    unreadable: dict[str, str]

    def select(self, image_ids) -> Features:
        """The rows of `image_ids`, in their order."""
        where = {image_id: i for i, image_id in enumerate(self.ids)}
        rows = np.array([where[i] for i in image_ids], dtype=np.int64)
        return Features(self.ids[rows], self.embeddings[rows], self.logits[rows], self.unreadable)


def feature_model(model: keras.Model, tta: list[str], augment=None) -> keras.Model:
    """image -> (embedding, outputs), each the mean over the TTA views; with
    `augment` (in-graph augmentation layers), of an augmented image."""
    inner = keras.Model(model.inputs, [model.get_layer("pool").output, model.output])
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    image = inputs if augment is None else augment(inputs, training=True)
    pairs = [inner(tta_view(image, view)) for view in tta]
    embedding = keras.ops.mean(keras.ops.stack([e for e, _ in pairs], axis=1), axis=1)
    outputs = keras.ops.mean(keras.ops.stack([o for _, o in pairs], axis=1), axis=1)
    return keras.Model(inputs, [embedding, outputs], name="features")


def to_logits(task: TaskSpec, outputs: np.ndarray) -> np.ndarray:
    """The model's outputs before their activation: log-odds of a sigmoid,
    log-probabilities of a softmax, an ordinal value as it is."""
    logits = np.asarray(outputs, dtype=np.float64).copy()
    for head, part in task.head_slices():
        p = np.clip(logits[:, part], EPS, 1 - EPS)
        if head.kind in ("multilabel", "binary"):
            logits[:, part] = np.log(p / (1 - p))
        elif head.kind == "multiclass":
            logits[:, part] = np.log(p)
    return logits.astype(np.float32)


def embed(extractor: keras.Model, generator: DataGenerator) -> tuple[np.ndarray, np.ndarray, dict]:
    """(embeddings float16, outputs, unreadable) of the generator's images
    through `extractor` (a feature_model)."""
    with surfacing_load_errors(generator):
        embeddings, outputs = extractor.predict(generator, verbose=keras_verbose())
    return embeddings.astype(np.float16), outputs, dict(generator.failed)


def made_from(checkpoint: Path, tta, augmented: list[str], image_ids) -> dict:
    stat = checkpoint.stat()
    ids = hashlib.blake2b("\n".join(image_ids).encode(), digest_size=12).hexdigest()
    aug = hashlib.blake2b("\n".join(augmented).encode(), digest_size=12).hexdigest()
    return {
        "checkpoint": [stat.st_size, stat.st_mtime_ns],
        "tta": list(tta),
        "augmented": aug,
        "images": ids,
    }


def read_made_from(path: Path, made_from: dict) -> dict | None:
    """The arrays of a features file made from `made_from` (None when there
    is none, or it was made from something else); `unreadable` decoded."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        if json.loads(str(saved["made_from"])) != made_from:
            return None
        found = {name: saved[name] for name in saved.files if name != "made_from"}
    return {**found, "unreadable": json.loads(str(found["unreadable"]))}


def write_made_from(path: Path, made_from: dict, unreadable: dict, **arrays) -> None:
    """A features file, atomically, with what it was made from."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays, unreadable=json.dumps(unreadable),
                 made_from=json.dumps(made_from))  # fmt: skip


def load(path: Path, made_from: dict) -> Features | None:
    found = read_made_from(path, made_from)
    if found is None:
        return None
    return Features(found["ids"], found["embeddings"], found["logits"], found["unreadable"])


def save(path: Path, features: Features, made_from: dict) -> None:
    write_made_from(path, made_from, features.unreadable, ids=features.ids,
                    embeddings=features.embeddings, logits=features.logits)  # fmt: skip


def features_path(fold_folder: Path, split: str) -> Path:
    return fold_folder / FOLDER / f"{split}.npz"


def compute(task: TaskSpec, passes: list[tuple[keras.Model, DataGenerator]], image_ids) -> Features:
    """The features of `image_ids` from (feature_model, generator) passes,
    each over some of them (plainly, or under the training augmentation)."""
    parts = [(gen.image_ids, *embed(extractor, gen)) for extractor, gen in passes]
    return Features(
        np.concatenate([np.asarray(p[0], dtype=str) for p in parts]),
        np.concatenate([p[1] for p in parts]),
        to_logits(task, np.concatenate([p[2] for p in parts])),
        {k: v for p in parts for k, v in p[3].items()},
    ).select(image_ids)
