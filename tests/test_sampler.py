"""train.steps_per_epoch and train.sample_weights: shorter epochs that still
show every image once before any repeats (across epochs and a resume), and
label weights that bring positives back more often, all from the seed."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest

from competition.config import load_config
from competition.data.generator import DataGenerator
from competition.data.sampler import Sampler
from competition.errors import ConfigError


def served(sampler: Sampler, epochs: range) -> np.ndarray:
    return np.concatenate([sampler.rows(e, b) for e in epochs for b in range(len(sampler))])


def test_short_epochs_cover_every_sample_once_per_pass():
    sampler = Sampler(103, 8, seed=3, shuffle=True, steps_per_epoch=5)
    assert len(sampler) == 5
    stream = served(sampler, range(12))  # 480 draws: four whole passes and part of a fifth
    for q in range(len(stream) // 103):
        assert sorted(stream[q * 103 : (q + 1) * 103]) == list(range(103)), q
    tail = stream[4 * 103 :]
    assert len(set(tail)) == len(tail)  # the fifth pass repeats nothing yet
    assert not np.array_equal(stream[:103], stream[103:206])  # each pass in its own order


def test_a_resumed_sampler_draws_what_an_uninterrupted_one_would():
    kept = Sampler(50, 4, seed=1, shuffle=True, steps_per_epoch=7, repeats=np.full(50, 1.5))
    whole = served(kept, range(9))
    fresh = Sampler(50, 4, seed=1, shuffle=True, steps_per_epoch=7, repeats=np.full(50, 1.5))
    np.testing.assert_array_equal(served(fresh, range(5, 9)), whole[5 * 28 :])
    other = Sampler(50, 4, seed=2, shuffle=True, steps_per_epoch=7)
    assert not np.array_equal(served(other, range(9)), whole)


def test_weights_bring_positives_back_more_often_and_drop_no_one():
    repeats = np.ones(200)
    repeats[:10] = 3.0  # a rare label, weighted 3
    repeats[10:20] = 1.5
    sampler = Sampler(200, 16, seed=0, shuffle=True, repeats=repeats)
    assert len(sampler) == -(-int(repeats.sum()) // 16)  # one expected pass per epoch
    for q in range(6):
        counts = np.bincount(sampler.pass_rows(q), minlength=200)
        assert (counts[:10] == 3).all() and (counts[20:] == 1).all()
        assert set(counts[10:20]) <= {1, 2}
    draws = np.bincount(served(sampler, range(40)), minlength=200)
    assert 2.7 < draws[:10].mean() / draws[20:].mean() < 3.3
    assert 1.3 < draws[10:20].mean() / draws[20:].mean() < 1.7
    with pytest.raises(ValueError, match="repeats must be 200 values >= 1"):
        Sampler(200, 16, shuffle=True, repeats=np.full(200, 0.5))


def test_inference_and_plain_epochs_keep_their_order():
    assert served(Sampler(10, 4), range(1)).tolist() == list(range(10))
    plain = Sampler(10, 4, seed=5, shuffle=True)
    assert len(plain) == 3 and sorted(served(plain, range(1))) == list(range(10))


def test_threads_asking_at_once_get_the_same_batches():
    def draw(results, i):
        sampler_rows = [shared.rows(e, b) for e in range(6) for b in range(len(shared))]
        results[i] = np.concatenate(sampler_rows)

    shared = Sampler(97, 5, seed=4, shuffle=True, steps_per_epoch=9, repeats=np.full(97, 1.3))
    results = {}
    threads = [threading.Thread(target=draw, args=(results, i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = Sampler(97, 5, seed=4, shuffle=True, steps_per_epoch=9, repeats=np.full(97, 1.3))
    for got in results.values():
        np.testing.assert_array_equal(got, served(alone, range(6)))


class Memory:
    """An in-memory source: each image a constant of its number."""

    split, shape = "train", (8, 8, 1)

    def load(self, image_id):
        return np.full(self.shape, int(image_id[3:]) % 256, np.uint8)


class Recording(DataGenerator):
    """Records the images of each (epoch, batch) it serves."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = {}

    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        self.served[(self.epoch, index)] = x[:, 0, 0, 0].tolist()
        return x, y


def fit_epochs(initial: int, epochs: int) -> dict:
    labels = (np.arange(90) % 2).reshape(-1, 1).astype(np.float32)
    ids = [f"ID_{i:03d}" for i in range(90)]
    gen = Recording(ids, Memory(), labels, batch_size=8, shuffle=True, steps_per_epoch=4)
    gen.on_epoch_end()  # Keras may call it before the first epoch: the order must not move
    gen.resume_at(initial)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.compile("sgd", "mse")
    # A plain fit: Keras' own shuffle (of whole batches) on, no callback
    model.fit(gen, epochs=epochs, initial_epoch=initial, verbose=0)
    return {key: rows for key, rows in gen.served.items() if initial <= key[0] < epochs}


def test_fit_with_short_epochs_covers_the_set_across_a_resume():
    whole = fit_epochs(0, 6)  # 6 epochs x 4 batches x 8 = 192 draws: two passes of 90, and 12
    resumed = {**fit_epochs(0, 2), **fit_epochs(2, 6)}  # stopped after epoch 2, then resumed
    assert sorted(whole) == [(e, b) for e in range(6) for b in range(4)]
    assert resumed == whole
    stream = [image for key in sorted(whole) for image in whole[key]]
    assert sorted(stream[:90]) == list(range(90)) and sorted(stream[90:180]) == list(range(90))


def test_sample_weights_are_checked_against_the_task():
    config = load_config(None, ["train.sample_weights={epidural: 3}"])
    assert config.train.sample_weights == {"epidural": 3.0}
    with pytest.raises(ConfigError, match="names 'epidurall'.*Expected one of: epidural"):
        load_config(None, ["train.sample_weights={epidurall: 3}"])
    with pytest.raises(ConfigError, match="weight >= 1.*Received: 0.5"):
        load_config(None, ["train.sample_weights={epidural: 0.5}"])
