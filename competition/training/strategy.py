"""Devices: the distribution strategy, mixed precision, and how batches are
fed under a strategy.

Keras' PyDataset with several workers under MirroredStrategy has been seen
to repeat and drop batches across epochs, so under a strategy the
DataGenerator is wrapped in a tf.data pipeline: a per-epoch shuffle of sample
indices, batched, each batch loaded by the generator in a numpy_function.
Every sample is then seen exactly once per epoch by construction.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from competition.data.generator import DataGenerator
from competition.workers import worker_count


def choose_strategy(name: str) -> tf.distribute.Strategy | None:
    """auto: MirroredStrategy over the GPUs when there are 2 or more; mirrored:
    over the GPUs, or over the logical CPU devices when there is no GPU."""
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "none" or (name == "auto" and len(gpus) < 2):
        return None
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def scope(strategy: tf.distribute.Strategy | None):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def set_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)


def as_tf_dataset(gen: DataGenerator, parallel: int = 2) -> tf.data.Dataset:
    """The generator's batches as tf.data, reshuffled every epoch when it shuffles."""
    n = len(gen.image_ids)
    rows = tf.data.Dataset.range(n)
    if gen.shuffle:
        rows = rows.shuffle(n, seed=gen.seed, reshuffle_each_iteration=True)
    batches = rows.batch(gen.batch_size).enumerate()
    shape = (None, *gen.source.shape)

    def load(index, batch_rows):
        out = gen.load_batch(np.asarray(batch_rows), int(index))
        return out if gen.training else (out,)

    x_type = tf.as_dtype(gen.dtype)
    types = [x_type, tf.float32] if gen.training else [x_type]

    def load_tf(index, batch_rows):
        tensors = tf.numpy_function(load, [index, batch_rows], types)
        tensors[0].set_shape(shape)
        if gen.training:
            tensors[1].set_shape((None, gen.labels.shape[1]))
            return tensors[0], tensors[1]
        return tensors[0]

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # A known cardinality, or the strategy's distributed dataset has none and
    # Keras counts the batches by running a whole extra epoch of loading first.
    return (
        batches.map(load_tf, num_parallel_calls=parallel, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
        .apply(tf.data.experimental.assert_cardinality(len(gen)))
    )


def feed(strategy, train_gen: DataGenerator, valid_gen: DataGenerator, parallel: int):
    """What `fit` takes: the generators themselves, or tf.data under a strategy."""
    if strategy is None:
        return train_gen, valid_gen
    parallel = worker_count(parallel)
    return as_tf_dataset(train_gen, parallel), as_tf_dataset(valid_gen, parallel)
