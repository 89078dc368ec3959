"""A DataGenerator's batches as a tf.data pipeline, for TensorFlow's
MirroredStrategy (competition.training.devices): a per-epoch shuffle of
sample indices, batched, each batch loaded by the generator in a
numpy_function, so every sample is seen exactly once per epoch. TensorFlow
only."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from competition.data.generator import DataGenerator


def as_tf_dataset(gen: DataGenerator, parallel: int = 2) -> tf.data.Dataset:
    """The generator's batches as tf.data, reshuffled every epoch when it shuffles."""
    n = len(gen.image_ids)
    rows = tf.data.Dataset.range(n)
    if gen.shuffle:
        rows = rows.shuffle(n, seed=gen.seed, reshuffle_each_iteration=True)
    batches = rows.batch(gen.batch_size).enumerate()
    shape = (None, *gen.source.shape)

    extra = gen.extra is not None  # (images, metadata) inputs, flattened through numpy_function

    def load(index, batch_rows):
        out = gen.load_batch(np.asarray(batch_rows), int(index))
        x, rest = (out[0], out[1:]) if gen.training or extra else (out, ())
        return (*(x if extra else (x,)), *rest)

    x_types = [tf.as_dtype(gen.dtype)] + ([tf.float32] if extra else [])
    types = x_types + ([tf.float32] if gen.training else [])

    def load_tf(index, batch_rows):
        tensors = tf.numpy_function(load, [index, batch_rows], types)
        tensors[0].set_shape(shape)
        if extra:
            tensors[1].set_shape((None, gen.extra.shape[1]))
        x = (tensors[0], tensors[1]) if extra else tensors[0]
        if gen.training:
            tensors[-1].set_shape((None, gen.labels.shape[1]))
            return x, tensors[-1]
        return x

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
