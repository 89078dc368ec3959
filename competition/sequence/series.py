"""Series for the sequence stage: the images of a split grouped by series
and sorted by z (from the header index, never from names), and batches of
whole series as the sequence model reads them.

A slice's input is [embedding, embedding - previous slice's, embedding -
next slice's, stage-1 logits] (the 2nd place's input, plus the logits the
1st place stacked): the differences say what changes along z, and the
logits let the model start from the CNN's answer. The differences are taken
after augmentation (reversal, dropping every other slice), so they always
describe the slices the model sees side by side.

Batches hold whole series, zero-padded to the longest series of the set (one
shape for every batch: Keras fixes a dataset's shape from its first batches);
a per-slice weight (1 real, 0 padding) keeps padding out of the loss and the
metrics, and the model masks it (a real slice's input is never all zeros:
its logits are not).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pandas as pd

from competition.layout import Layout
from competition.sequence.settings import SequenceConfig


def series_table(layout: Layout, split: str, workers: int = 0) -> pd.DataFrame:
    """series_id and z of the split's images, indexed by image ID (from the
    header index, or the split's headers read now where there is none)."""
    from competition.data.index import split_index

    return split_index(layout, split, workers).set_index("image_id")[["series_id", "z"]]


def series_rows(image_ids, headers: pd.DataFrame) -> list[np.ndarray]:
    """Rows of `image_ids` grouped by series, each sorted by z (then ID).
    `headers`: series_id and z, indexed by image ID; an image it lacks, or
    one with no series, is a series of its own."""
    ids = pd.Index(image_ids)
    found = headers.reindex(ids)
    series = found["series_id"].fillna("").astype(str).to_numpy()
    lone = series == ""
    series[lone] = "~" + ids[lone].astype(str)
    table = pd.DataFrame(
        {"series": series, "z": found["z"].to_numpy(dtype=float), "id": ids, "row": range(len(ids))}
    )
    table = table.sort_values(["series", "z", "id"], na_position="last", kind="stable")
    return [group["row"].to_numpy() for _, group in table.groupby("series", sort=False)]


def slice_inputs(embeddings: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """(T, D) embeddings and (T, O) logits of one series in order -> (T, 3D + O)."""
    e = embeddings.astype(np.float32)
    previous = np.concatenate([e[:1], e[:-1]])
    following = np.concatenate([e[1:], e[-1:]])
    return np.concatenate([e, e - previous, e - following, logits.astype(np.float32)], axis=1)


def augmented(
    rows: np.ndarray, rng: np.random.Generator, sequence_config: SequenceConfig
) -> np.ndarray:
    """A training series as the winners augmented it: every other slice
    (either half) with probability drop_alternate, reversed with probability reverse."""
    if len(rows) >= 4 and rng.random() < sequence_config.drop_alternate:
        rows = rows[int(rng.integers(0, 2)) :: 2]
    if rng.random() < sequence_config.reverse:
        rows = rows[::-1]
    return rows


class SeriesBatches(keras.utils.PyDataset):
    """Batches of whole series: x (B, T, 3D + O) float32, and for training
    y (B, T, outputs) with per-slice weights (B, T)."""

    def __init__(
        self,
        series: list[np.ndarray],
        embeddings: np.ndarray,
        logits: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        sequence_config: SequenceConfig,
        shuffle: bool = False,
        augment: bool = False,
        reverse: bool = False,
        seed: int = 0,
    ):
        super().__init__(workers=1)
        if not series:
            raise ValueError("SeriesBatches needs at least one series. Received: 0")
        self.series, self.embeddings, self.logits = series, embeddings, logits
        self.labels = labels
        self.sequence_config, self.shuffle, self.augment, self.reverse, self.seed = (
            sequence_config,
            shuffle,
            augment,
            reverse,
            seed,
        )
        self.epoch = 0
        self.order = self._permutation()
        self.length = max(len(s) for s in series)

    @property
    def feature_dim(self) -> int:
        return 3 * self.embeddings.shape[1] + self.logits.shape[1]

    def __len__(self) -> int:
        return math.ceil(len(self.series) / self.sequence_config.batch_size)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._permutation()

    def _permutation(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.series))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.series))

    def batch_rows(self, index: int) -> list[np.ndarray]:
        """The image rows of each series in batch `index`, in the order the model sees them."""
        picked = self.order[
            index * self.sequence_config.batch_size : (index + 1) * self.sequence_config.batch_size
        ]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        rows = [self.series[i] for i in picked]
        if self.augment:
            rows = [augmented(r, rng, self.sequence_config) for r in rows]
        if self.reverse:
            rows = [r[::-1] for r in rows]
        return rows

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index out of range 0..{len(self) - 1}. Received: {index}")
        rows = self.batch_rows(index)
        longest = self.length
        x = np.zeros((len(rows), longest, self.feature_dim), dtype=np.float32)
        for i, r in enumerate(rows):
            x[i, : len(r)] = slice_inputs(self.embeddings[r], self.logits[r])
        if self.labels is None:
            return (x,)
        y = np.zeros((len(rows), longest, self.labels.shape[1]), dtype=np.float32)
        weight = np.zeros((len(rows), longest), dtype=np.float32)
        for i, r in enumerate(rows):
            y[i, : len(r)], weight[i, : len(r)] = self.labels[r], 1.0
        return x, y, weight


def predict_series(model: keras.Model, batches: SeriesBatches, n_images: int) -> np.ndarray:
    """One row per image of the model's per-slice outputs. Batch by batch:
    their lengths differ, so `model.predict` could not stack them."""
    found = np.full((n_images, model.output_shape[-1]), np.nan, dtype=np.float32)
    for index in range(len(batches)):
        (x,) = batches[index][:1]
        outputs = np.asarray(model.predict_on_batch(x))
        for i, rows in enumerate(batches.batch_rows(index)):
            found[rows] = outputs[i, : len(rows)]
    return found


def batches_for(
    sequence_config: SequenceConfig,
    seed: int,
    features,
    headers: pd.DataFrame,
    labels=None,
    *,
    training: bool = False,
    reverse: bool = False,
) -> SeriesBatches:
    """Batches of the series of `features` (a sequence.features.Features):
    shuffled and augmented for training, reversed for the reverse TTA pass."""
    return SeriesBatches(
        series_rows(features.ids, headers),
        features.embeddings,
        features.logits,
        labels,
        sequence_config=sequence_config,
        shuffle=training,
        augment=training,
        reverse=reverse,
        seed=seed,
    )


def predict_with_sequence(
    model: keras.Model, sequence_config: SequenceConfig, seed: int, features, headers
) -> np.ndarray:
    """Per-image outputs of the sequence model, in `features.ids` order;
    with reverse_tta, the mean of the forward and the reversed pass."""
    passes = [False, True] if sequence_config.reverse_tta else [False]
    outputs = [
        predict_series(
            model,
            batches_for(sequence_config, seed, features, headers, reverse=r),
            len(features.ids),
        )
        for r in passes
    ]
    return np.mean(outputs, axis=0)
