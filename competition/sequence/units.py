"""Stage 2 of a series- or study-level task (`make train-seq FOLD=k`), the
two-stage variant of the series model: fold k's trained series model's
slice encoder, frozen, embeds every readable slice of each unit (not only
the T evenly spaced ones it trained on); a small model over all of a
unit's slices pools them into the unit's heads.

    slice features (L, F), padded and masked up to sequence.max_slices (a
    longer unit: that many, evenly spaced) -> layer norm -> dropout ->
    Dense(units) + Dense(units) of the slice's position along the axis
    (sines and cosines of 0..1) -> attention and maximum over the real
    slices -> the task's heads

No leakage: fold k's encoder trained on fold k's training units only; the
pooled model trains on their features and is scored on the validation
units' (which neither saw). The features file is reused when made from the
same checkpoint and units (`runs/<exp>/fold<k>/features/units_<split>.npz`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from competition.data.units import NO_SLICE, UnitSource, even_picks
from competition.errors import ImageReadError
from competition.sequence.features import read_made_from, write_made_from
from competition.sequence.settings import SequenceConfig
from competition.task import TaskSpec
from competition.training import layers
from competition.training.losses import compile_args
from competition.training.model import task_heads
from competition.training.schedule import make_optimizer

SLICE_BATCH = 64  # slices through the encoder at a time


@dataclass(frozen=True)
class UnitFeatures:
    """Per unit (in `ids` order) its slices' embeddings in body-axis order:
    embeddings[offsets[u]:offsets[u + 1]]."""

    ids: np.ndarray
    offsets: np.ndarray
    embeddings: np.ndarray  # (slices, F) float16
    unreadable: dict[str, str]

    def rows(self, u: int) -> np.ndarray:
        return self.embeddings[self.offsets[u] : self.offsets[u + 1]]

    def select(self, unit_ids) -> UnitFeatures:
        where = {unit: u for u, unit in enumerate(self.ids)}
        parts = [self.rows(where[unit]) for unit in unit_ids]
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        embeddings = np.concatenate(parts) if parts else self.embeddings[:0]
        return UnitFeatures(np.asarray(unit_ids, dtype=str), offsets, embeddings, self.unreadable)

    def arrays(self, max_slices: int) -> tuple[np.ndarray, np.ndarray]:
        """(U, L, F) features and (U, L, 1) positions (0..1 along the unit,
        -1 for padding), L = the longest unit, at most `max_slices`."""
        counts = np.diff(self.offsets)
        length = int(min(max(counts.max(initial=1), 1), max_slices))
        features = np.zeros((len(self.ids), length, self.embeddings.shape[1]), np.float32)
        positions = np.full((len(self.ids), length, 1), -1.0, np.float32)
        for u, n in enumerate(counts):
            if not n:
                continue
            picks = even_picks(int(n), length) if n > length else np.arange(n)
            features[u, : len(picks)] = self.rows(u)[picks]
            positions[u, : len(picks), 0] = picks / max(int(n) - 1, 1)
        return features, positions


def slice_encoder_of(model: keras.Model) -> keras.Model:
    """The series model's shared per-slice encoder (frozen: only read)."""
    return model.get_layer("slices").layer


def _slice_images(inner, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images, read) of slice IDs: one gather where the source holds them
    all, else one by one, an unreadable slice left out."""
    locate = getattr(inner, "locate", None)
    rows = locate(ids) if locate is not None else None
    if rows is not None and (rows >= 0).all():
        return inner.take(rows), np.ones(len(ids), dtype=bool)
    images, read = [], np.ones(len(ids), dtype=bool)
    for k, image_id in enumerate(ids):
        try:
            images.append(inner.load(str(image_id)))
        except ImageReadError:
            read[k] = False
    return (np.stack(images) if images else np.zeros((0, *inner.shape), np.uint8)), read


def embed_units(encoder: keras.Model, source: UnitSource, unit_ids) -> UnitFeatures:
    """Every readable slice of each unit through the encoder."""
    slices, unreadable = source.units.slices, {}
    per_unit = []
    for unit in unit_ids:
        ids = slices.get(unit)
        if ids is None or not len(ids):
            unreadable[unit] = NO_SLICE
            ids = np.zeros(0, dtype=str)
        per_unit.append(np.asarray(ids, dtype=str))
    flat = np.concatenate(per_unit) if per_unit else np.zeros(0, dtype=str)
    found, kept = [], np.ones(len(flat), dtype=bool)
    for start in range(0, len(flat), SLICE_BATCH):
        images, read = _slice_images(source.inner, flat[start : start + SLICE_BATCH])
        kept[start : start + len(read)] = read
        if len(images):
            found.append(np.asarray(encoder.predict_on_batch(images), dtype=np.float16))
    width = encoder.output_shape[-1]
    embeddings = np.concatenate(found) if found else np.zeros((0, width), np.float16)
    counts = [int(kept[a:b].sum()) for a, b in _bounds(per_unit)]
    for unit, count in zip(unit_ids, counts, strict=True):
        if not count:
            unreadable.setdefault(unit, NO_SLICE)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return UnitFeatures(np.asarray(unit_ids, dtype=str), offsets, embeddings, unreadable)


def _bounds(parts: list[np.ndarray]) -> list[tuple[int, int]]:
    ends = np.cumsum([len(p) for p in parts])
    return list(zip(np.concatenate([[0], ends[:-1]]).astype(int), ends.astype(int), strict=True))


def made_from(checkpoint: Path, unit_ids) -> dict:
    stat = checkpoint.stat()
    units = hashlib.blake2b("\n".join(unit_ids).encode(), digest_size=12).hexdigest()
    return {"checkpoint": [stat.st_size, stat.st_mtime_ns], "units": units}


def features_path(fold_folder: Path, split: str) -> Path:
    return fold_folder / "features" / f"units_{split}.npz"


def load(path: Path, made: dict) -> UnitFeatures | None:
    found = read_made_from(path, made)
    if found is None:
        return None
    return UnitFeatures(found["ids"], found["offsets"], found["embeddings"], found["unreadable"])


def save(path: Path, features: UnitFeatures, made: dict) -> None:
    write_made_from(path, made, features.unreadable, ids=features.ids,
                    offsets=features.offsets, embeddings=features.embeddings)  # fmt: skip


# --- the pooled model ----------------------------------------------------------------


def build_pooled_model(
    feature_dim: int, task: TaskSpec, sequence: SequenceConfig, training_mean: np.ndarray
) -> keras.Model:
    features = keras.Input(shape=(None, feature_dim), name="slice_features")
    positions = keras.Input(shape=(None, 1), name="positions")
    x = keras.layers.LayerNormalization(name="slice_norm")(features)
    x = keras.layers.Dropout(sequence.dropout, name="dropout")(x)
    x = keras.layers.Dense(sequence.units, activation="relu", name="project")(x)
    where = keras.layers.Dense(sequence.units, name="position")(
        layers.PositionFeatures(name="position_features")(positions)
    )
    x = keras.layers.Add(name="with_position")([x, where])
    pooled = layers.MaskedPooling(sequence.units, name="pooled")([x, positions])
    outputs = task_heads(task, pooled, training_mean)
    return keras.Model([features, positions], outputs, name=f"pooled_{task.name}")


def compiled_pooled_model(
    task: TaskSpec, sequence: SequenceConfig, feature_dim: int, steps: int, mean: np.ndarray
) -> keras.Model:
    model = build_pooled_model(feature_dim, task, sequence, mean)
    args = compile_args(task)
    model.compile(optimizer=make_optimizer(sequence, steps), loss=args["loss"],
                  metrics=args["metrics"])  # fmt: skip
    return model


class UnitBatches(keras.utils.PyDataset):
    """Batches of ([features, positions], targets), shuffled each epoch when training."""

    def __init__(self, features, positions, targets, batch_size, seed=0, training=False):
        super().__init__()
        self.features, self.positions, self.targets = features, positions, targets
        self.batch_size, self.training = batch_size, training
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(features))
        self.on_epoch_end()

    def __len__(self) -> int:
        return max(1, -(-len(self.features) // self.batch_size))

    def on_epoch_end(self) -> None:
        if self.training:
            self.order = self.rng.permutation(len(self.features))

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        inputs = {"slice_features": self.features[rows], "positions": self.positions[rows]}
        return (inputs,) if self.targets is None else (inputs, self.targets[rows])


def predict_pooled(model: keras.Model, features: UnitFeatures, sequence: SequenceConfig):
    """(U, outputs) for the units of `features`."""
    arrays = features.arrays(sequence.max_slices)
    return model.predict(UnitBatches(*arrays, None, sequence.batch_size), verbose=0)
