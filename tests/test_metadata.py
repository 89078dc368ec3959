"""The metadata branch: label / test CSV columns beside the image, numeric
ones normalised with the fold's training rows (missing flagged), categorical
ones embedded with the label CSV's vocabulary kept in the checkpoint (a
tiny ISIC 2024 stand-in trains, predicts and runs in the kernel with it:
tests/test_stack.py)."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.data import metadata
from competition.errors import ConfigError
from competition.training.layers import MetadataBranch

from helpers import REPO

COLUMNS = metadata.MetadataColumns(("age", "size"), ("sex",))


def test_encoding_flags_missing_values_and_codes_categories_by_the_vocabulary():
    table = pd.DataFrame(
        {"age": [40, None, 60, 50], "size": ["1.5", "2.5", "x", "4"], "sex": ["m", "f", None, "u"]},
        index=["a", "b", "c", "d"],
    )
    vocab = metadata.vocabularies(table.loc[["a", "b"]], COLUMNS)
    assert vocab == {"sex": ["f", "m"]}
    encoded = metadata.encode(table, ["d", "a", "b", "c"], COLUMNS, vocab)
    assert encoded.shape == (4, COLUMNS.width) == (4, 5)
    np.testing.assert_array_equal(encoded[:, 0], [50, 40, 0, 60])  # missing: 0 ...
    np.testing.assert_array_equal(encoded[:, 2], [0, 0, 1, 0])  # ... and flagged
    np.testing.assert_array_equal(encoded[:, 3], [0, 0, 0, 1])  # "x" is no number
    np.testing.assert_array_equal(encoded[:, 4], [0, 2, 1, 0])  # unseen "u", missing: 0
    assert metadata.missing_report(encoded, COLUMNS) == {"age": 1, "size": 1, "sex": 2}
    mean, std = metadata.training_statistics(encoded, COLUMNS)
    assert mean[0] == pytest.approx(50) and std[0] == pytest.approx(np.std([50, 40, 60]))
    with pytest.raises(Exception, match=r"No metadata row for 1 image\(s\) \(first: 'z'\)"):
        metadata.encode(table, ["a", "z"], COLUMNS, vocab)


def test_the_branch_normalises_ignores_missing_values_and_saves_its_vocabulary(tmp_path):
    branch = MetadataBranch([50.0, 2.0], [10.0, 1.0], {"sex": ["f", "m"]}, units=4, name="b")
    inputs = keras.Input(shape=(5,))
    model = keras.Model(inputs, branch(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.get_layer("b").vocabularies == {"sex": ["f", "m"]}
    x = np.array([[60, 0, 0, 1, 2], [60, 7, 0, 1, 2]], np.float32)  # the size is flagged missing
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    out = loaded.predict(x, verbose=0)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)  # a missing value's number is ignored


def test_a_task_without_per_image_columns_is_refused():
    with pytest.raises(ConfigError, match="label CSV is long"):
        load_config(REPO / "configs" / "rsna_ich.yaml", ["model.metadata_numeric=[age]"])
    with pytest.raises(ConfigError, match="MixUp / CutMix"):
        load_config(REPO / "configs" / "isic_2024.yaml", [
            "model.metadata_categorical=[sex]", "augment=[{MixUp: {alpha: 0.2}}]"
        ])  # fmt: skip


def test_the_metadata_vector_rides_beside_the_images_in_every_feed():
    """Keras' PyDataset (an unlabelled batch wrapped so Keras does not read
    the pair as (x, y)), JAX's padding to the devices, and TensorFlow's tf.data."""
    from competition.data.generator import DataGenerator
    from competition.training.tfdata import as_tf_dataset

    from helpers import IndexSource

    ids = [f"ID_{i}" for i in range(5)]
    extra = np.arange(10, dtype=np.float32).reshape(5, 2)
    labels = np.ones((5, 1), np.float32)
    (images, meta), y = DataGenerator(ids, IndexSource(), labels, batch_size=8, extra=extra)[0]
    np.testing.assert_array_equal(meta, extra)
    ((images, meta),) = DataGenerator(ids, IndexSource(), batch_size=8, extra=extra)[0]
    assert len(images) == len(meta) == 5
    padded = DataGenerator(ids, IndexSource(), labels, batch_size=8, extra=extra)
    padded.pad_to = 4
    (images, meta), y, weights = padded[0]
    assert len(images) == len(meta) == len(y) == 8 and meta[5:, 0].tolist() == [0, 2, 4]
    gen = DataGenerator(ids, IndexSource(), labels, batch_size=8, extra=extra)
    (tf_images, tf_meta), tf_y = next(iter(as_tf_dataset(gen)))
    assert tf_images.shape[0] == 5 and tf_meta.shape == (5, 2) and tf_y.shape == (5, 1)
