from __future__ import annotations

import numpy as np
import pytest

from competition.data.cache.spec import CacheError
from competition.data.generator import DataGenerator, ImageLoadError, surfacing_load_errors
from competition.pipeline.generators import training_generator
from competition.pipeline.inputs import fold_data, read_inputs

from conftest import small_config
from helpers import IndexSource


def generator(n=23, batch_size=5, **kwargs) -> DataGenerator:
    ids = [f"ID_{i}" for i in range(n)]
    labels = np.repeat(np.arange(n, dtype=np.float32)[:, None], 6, axis=1)
    return DataGenerator(
        ids,
        kwargs.pop("source", IndexSource()),
        kwargs.pop("labels", labels),
        batch_size=batch_size,
        **kwargs,
    )


def epoch_samples(gen: DataGenerator) -> list[int]:
    return [int(v) for i in range(len(gen)) for v in gen[i][1][:, 0]]


def test_length_is_ceil_so_predict_keeps_the_tail():
    gen = generator(n=23, batch_size=5)
    assert len(gen) == 5
    assert gen[4][0].shape[0] == 3
    with pytest.raises(IndexError):
        gen[5]


def test_every_sample_once_per_epoch_with_shuffle_even_with_extra_epoch_end_calls():
    gen = generator(shuffle=True, seed=3)
    orders = []
    for extra in (1, 2, 0):  # Keras calls on_epoch_end before the first epoch, and more
        for _ in range(extra):
            gen.on_epoch_end()
        gen.on_epoch_begin()  # once per epoch Keras runs: the epoch counts from here
        samples = epoch_samples(gen)
        assert sorted(samples) == list(range(23))
        orders.append(samples)
        gen.on_epoch_end()
    assert orders[0] != orders[1] != orders[2]
    again = generator(shuffle=True, seed=3)
    again.on_epoch_begin()
    assert epoch_samples(again) == orders[0]  # seeded
    again.resume_at(2)  # a fit resumed at epoch 3 draws what the uninterrupted one did
    again.on_epoch_begin()
    assert epoch_samples(again) == orders[2]


def test_inference_keeps_order_and_ids_match_batches():
    gen = generator(labels=None)
    x = np.concatenate([gen[i] for i in range(len(gen))])
    assert x[:, 0, 0, 0].tolist() == list(range(23))
    assert gen.ids.tolist() == [f"ID_{i}" for i in range(23)]
    gen.on_epoch_end()
    assert gen.ids.tolist() == [f"ID_{i}" for i in range(23)]


def test_batches_have_stable_shapes_and_dtypes():
    gen = generator(flips=(0.5, 0.5), shuffle=True)
    for i in range(len(gen)):
        x, y = gen[i]
        assert x.dtype == np.uint8 and y.dtype == np.float32
        assert x.shape[1:] == (4, 4, 3) and y.shape[1:] == (6,)
    again = gen[0][0]
    np.testing.assert_array_equal(gen[0][0], again)  # pure: same batch twice


def test_no_augmentation_for_inference_or_validation():
    plain = generator(labels=None)[0]
    assert all((img == k).all() for k, img in enumerate(plain))


def test_unreadable_image_is_replaced_and_reported_in_training():
    gen = generator(source=IndexSource(bad={"ID_7"}))
    samples = epoch_samples(gen)
    assert 7 not in samples and len(samples) == 23
    assert gen.failed == {"ID_7": "corrupt pixel data (test)"}


def test_unreadable_image_in_inference_keeps_alignment_and_is_reported():
    gen = generator(labels=None, source=IndexSource(bad={"ID_7"}))
    x = np.concatenate([gen[i] for i in range(len(gen))])
    assert len(x) == 23 and "ID_7" in gen.failed


def test_dicom_source_batches_from_the_small_competition(small_competition):
    data = fold_data(small_competition, read_inputs(small_competition), 0)
    gen = training_generator(small_competition, data)
    x, y = gen[0]
    assert x.shape == (16, 64, 64, 3) and x.dtype == np.uint8  # the model casts in-graph
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 200
    assert set(np.unique(y)) <= {0.0, 1.0} and y.shape == (16, 6)
    assert not set(data.train.image_id) & set(data.valid.image_id)
    assert data.y_valid.shape == (len(data.valid), 6)


class FailingSource(IndexSource):
    """IndexSource whose `image` fails with `error` (not a bad file)."""

    def __init__(self, error, image="ID_7"):
        super().__init__()
        self.error, self.image = error, image

    def load(self, image_id):
        if image_id == self.image:
            raise self.error
        return super().load(image_id)


def test_loader_errors_that_are_not_bad_files_stop_the_run_naming_the_image():
    ids = [f"ID_{i}" for i in range(10)]
    gen = DataGenerator(ids, FailingSource(OSError(5, "Input/output error")), batch_size=4)
    with pytest.raises(ImageLoadError, match=r"image ID_7 failed \(OSError: \[Errno 5\] Input"):
        gen[1]
    assert gen.error is not None and not gen.failed  # not taken for a bad file
    with pytest.raises(ImageLoadError, match="ID_7"), surfacing_load_errors(gen):
        raise RuntimeError("what TensorFlow raises in its place")
    kit_error = CacheError("Image ID_7 is not in the cache at /c")
    gen = DataGenerator(ids, FailingSource(kit_error), batch_size=4)
    with pytest.raises(CacheError, match="ID_7 is not in the cache"):
        gen[1]  # the kit's own message, not wrapped
    assert gen.error is kit_error


def test_a_plain_fit_of_the_kits_model_raises_a_loader_error_as_the_kits():
    """No context manager, no callback: the kit's training model surfaces a
    worker's error itself; a plain Keras model on TensorFlow gets its
    wrapper of it (the kit's message inside). The image fails in the third
    batch: Keras reads the first two itself, outside tf.data, for their shapes."""
    import keras

    from competition.augment.layers import training_model

    def failing(workers):
        ids = [f"ID_{i}" for i in range(16)]
        source = FailingSource(OSError(5, "Input/output error"), image="ID_9")
        return DataGenerator(
            ids, source, np.zeros((16, 1), np.float32), batch_size=4, workers=workers
        )

    network = keras.Sequential(
        [keras.Input(IndexSource.shape), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model = training_model(network, [], seed=0)
    model.compile("sgd", "mse")
    for workers in (1, 2):
        with pytest.raises(ImageLoadError, match=r"image ID_9 failed \(OSError"):
            model.fit(failing(workers), epochs=1, verbose=0)
    network.compile("sgd", "mse")
    with pytest.raises(Exception) as caught:
        network.fit(failing(1), epochs=1, verbose=0)
    assert not isinstance(caught.value, ImageLoadError) and "ID_9" in str(caught.value)


def test_training_says_when_it_decodes_the_files_for_want_of_a_cache(small_competition, tmp_path):
    from competition.data.sources import cache_note

    config = small_config(small_competition.data.root, f"data.cache_dir={tmp_path / 'none'}")
    note = cache_note(config.inputs, "train")
    assert note and "no finished cache for these settings" in note and "make cache" in note
    files = small_config(small_competition.data.root, "data.source=files")
    assert cache_note(files.inputs, "train") is None  # asked for the files: nothing to say
