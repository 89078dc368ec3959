"""Every DataGenerator the kit builds from a config, for each use: a fold's
training and validation, its out-of-fold predictions, the stage-1 features
for the sequence stage, the test set. The loader settings (train.workers,
use_multiprocessing, max_queue_size) and the seed are taken here, once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from competition.augment.spec import placement
from competition.config import Config
from competition.data import metadata
from competition.data.generator import DataGenerator
from competition.data.metadata import MetadataColumns
from competition.pipeline.inputs import FoldData, Inputs, fold_data, read_inputs


def generator(
    config: Config,
    image_ids,
    source,
    labels=None,
    *,
    batch_size: int | None = None,
    shuffle: bool = False,
    flips: tuple[float, float] | None = None,
    host=None,
    steps_per_epoch: int = 0,
    repeats: np.ndarray | None = None,
    split: str = "train",
    vocabularies: dict | None = None,
) -> DataGenerator:
    """A DataGenerator with the config's loader settings (batch size:
    train.batch_size unless given), and the images' metadata vectors when
    the model has a metadata branch (`split`'s CSV; `vocabularies`: the
    model's, else the label CSV's)."""
    loader = config.train
    extra, vocab = metadata_vectors(config, list(image_ids), split, vocabularies)
    made = DataGenerator(
        list(image_ids),
        source,
        labels,
        batch_size=batch_size or loader.batch_size,
        shuffle=shuffle,
        flips=flips,
        augment_batch=host,
        seed=config.seed,
        workers=loader.workers,
        use_multiprocessing=loader.use_multiprocessing,
        max_queue_size=loader.max_queue_size,
        steps_per_epoch=steps_per_epoch,
        repeats=repeats,
        extra=extra,
    )
    made.metadata_vocabularies = vocab
    return made


def metadata_columns(config: Config) -> MetadataColumns:
    model = config.model
    return MetadataColumns(tuple(model.metadata_numeric), tuple(model.metadata_categorical))


def metadata_vectors(config: Config, image_ids: list[str], split: str, vocab: dict | None):
    """(the images' metadata vectors, the vocabularies) or (None, None)
    without model.metadata_* columns: the label CSV's rows for the training
    split, the test CSV's for the test split."""
    columns = metadata_columns(config)
    if not columns:
        return None, None
    layout, id_field = config.layout, config.task.id_field

    def labelled():  # not there in a Kaggle kernel, where the model brings its vocabulary
        return metadata.read_table(layout.train_csv, id_field, columns, "label CSV")

    vocab = metadata.vocabularies(labelled(), columns) if vocab is None else vocab
    if split == "train":
        table = labelled()
    else:
        table = metadata.read_table(layout.test_csv, id_field, columns, "test CSV")
    return metadata.encode(table, image_ids, columns, vocab), vocab


def host_flips(config: Config) -> tuple[float, float]:
    """P(horizontal), P(vertical) flip of the augmentation's RandomFlip steps."""
    return placement(config.augment).host_flips


def sample_repeats(config: Config, rows: pd.DataFrame) -> np.ndarray | None:
    """Draws per pass of each row: the largest weight of its positive labels
    (train.sample_weights; `balanced`: negatives / positives of these rows),
    1 for the rest; None without weights."""
    weights = config.train.sample_weights
    if not weights:
        return None
    repeats = np.ones(len(rows))
    for column, weight in weights.items():
        positive = rows[column].to_numpy() > 0
        if weight == "balanced":
            weight = max(1.0, (~positive).sum() / max(positive.sum(), 1))
        repeats = np.maximum(repeats, np.where(positive, weight, 1.0))
    return repeats


def training_generator(config: Config, data: FoldData, host=None) -> DataGenerator:
    """The fold's training images: shuffled per epoch, flipped, weighted,
    `host`: the image layers to run on the host (a HostAugmenter), or None."""
    return generator(
        config,
        data.train["image_id"],
        data.source,
        with_slice_targets(config, data),
        shuffle=True,
        flips=host_flips(config),
        host=host,
        steps_per_epoch=config.train.steps_per_epoch,
        repeats=sample_repeats(config, data.train),
    )


def with_slice_targets(config: Config, data: FoldData) -> np.ndarray:
    """The fold's training targets, and after them each unit's slice targets
    where series.slice_labels names a CSV (competition.data.slice_labels)."""
    settings = config.series.slice_labels
    if not config.task.per_unit or settings.csv is None:
        return data.y_train
    from competition.data.slice_labels import read_slice_labels, slice_targets

    table = read_slice_labels(config.task, settings, config.layout.root)
    ids = list(data.train["image_id"])
    found = slice_targets(config.task, settings, table, data.source, ids, data.y_train)
    return np.concatenate([data.y_train, found], axis=1)


def validation_generator(config: Config, data: FoldData) -> DataGenerator:
    return generator(config, data.valid["image_id"], data.source, data.y_valid)


def prediction_generator(config: Config, data: FoldData, rows: pd.DataFrame) -> DataGenerator:
    """Unlabelled, in `rows` order: a fold's out-of-fold predictions."""
    return generator(config, rows["image_id"], data.source)


def inference_generator(
    config: Config, image_ids: list[str], source, vocabularies: dict | None = None
) -> DataGenerator:
    """Test images in the given order, unshuffled, unaugmented, last batch
    kept (`vocabularies`: the loaded model's metadata branch's)."""
    return generator(config, image_ids, source, batch_size=config.predict.batch_size,
                     split="test", vocabularies=vocabularies)  # fmt: skip


def embedding_generator(config: Config, image_ids, source, *, augmented: bool) -> DataGenerator:
    """The images a fold's CNN embeds for the sequence stage (under the
    training flips when `augmented`)."""
    flips = host_flips(config) if augmented else None
    return generator(config, image_ids, source, batch_size=config.predict.batch_size, flips=flips)


def fold_seed(config: Config, fold: int) -> int:
    """The seed of a fold's augmentation layers: each fold draws its own."""
    return config.seed + 1000 * fold


def host_augmentation(config: Config, fold: int):
    """The image layers as a HostAugmenter when train.augment_on places them
    on the host (auto: where there is no GPU and the workers are threads);
    None when they run in the graph, or there are none."""
    from competition.augment.layers import host_augmenter, image_layers_on

    loader = config.train
    if image_layers_on(loader.augment_on, loader.use_multiprocessing) != "host":
        return None
    return host_augmenter(config.augment, fold_seed(config, fold))


def fold_generators(
    config: Config, fold: int, inputs: Inputs | None = None
) -> tuple[DataGenerator, DataGenerator]:
    """(training, validation) generators of a fold, ready for a plain
    `model.fit(train, validation_data=valid)`: the training one runs the
    augmentation's image layers on the host when train.augment_on places
    them there (compiled_model then leaves them out of the graph)."""
    data = fold_data(config, inputs or read_inputs(config), fold)
    host = host_augmentation(config, fold)
    return training_generator(config, data, host), validation_generator(config, data)


def test_generator(config: Config) -> DataGenerator:
    """The whole test set (the sample submission's images, or the test
    folder's or test CSV's as task.images.test_list says), in order, for a
    plain `model.predict`; its `ids` are the rows' images."""
    from competition.data.sources import open_source
    from competition.pipeline.assemble import test_set

    _, image_ids, fields = test_set(config)
    source = open_source(config.inputs, "test", fields)
    return inference_generator(config, image_ids, source)
