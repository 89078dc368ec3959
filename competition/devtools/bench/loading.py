"""The input pipeline alone: the kit's DataGenerator (from the DICOM files,
from the cache, 2D and 2.5D) against its peers and an in-memory ceiling."""

from __future__ import annotations

import numpy as np

from competition.config import Config
from competition.devtools.bench.peers import SeedsGenerator, tfdata_over_dicom
from competition.devtools.bench.timing import (
    best_rate,
    fastest,
    generator_batches,
    images_per_second,
    memory_batches,
    timed,
    warm_files,
)

FLIPS = (0.5, 0.0)  # P(horizontal), P(vertical): the host flips every config's RandomFlip makes


def loaders(config: Config, ids: list[str], cached, dicom, images: np.ndarray, stacks) -> dict:
    from competition.pipeline.generators import generator

    batch = config.train.batch_size
    windows, size = config.preprocess.windows, config.preprocess.image_size
    paths = [str(dicom.paths(i)) for i in ids]
    warm_files(paths)
    n = len(ids)
    seeds = SeedsGenerator(paths, windows, size, batch)

    def kit(source):
        gen = generator(config, ids, source, flips=FLIPS)
        return best_rate(lambda: generator_batches(gen, gen.workers), n)

    return {
        "seeds_generator": best_rate(lambda: generator_batches(seeds, workers=1), n),
        **tfdata_rate(paths, windows, size, batch),
        "kit_dicom_flips": kit(dicom),
        # Alternating, as they are compared: a disturbance hits both alike.
        **cache_and_ceiling(config, ids, cached, images, stacks),
    }


def tfdata_rate(paths: list[str], windows, size: int, batch: int) -> dict:
    """The tf.data peer, on the TensorFlow backend (where a competitor would
    write it); on JAX or PyTorch TensorFlow stays out of the process."""
    from competition.backend import chosen

    if chosen() != "tensorflow":
        return {}
    pipeline = lambda: tfdata_over_dicom(paths, windows, size, batch).as_numpy_iterator()  # noqa: E731
    return {"tfdata_over_dicom": best_rate(pipeline, len(paths))}


def cache_and_ceiling(config: Config, ids, cached, images, stacks) -> dict:
    from competition.pipeline.generators import generator

    def flips(source):
        return generator(config, ids, source, flips=FLIPS)

    gen, stacked = flips(cached), flips(stacks)
    n = len(ids)
    seconds = fastest(
        {
            "kit_cache_flips": lambda: timed(
                lambda: images_per_second(generator_batches(gen, gen.workers), n)
            ),
            "kit_cache_2.5d_flips": lambda: timed(
                lambda: images_per_second(generator_batches(stacked, stacked.workers), n)
            ),
            "in_memory_ceiling": lambda: timed(
                lambda: images_per_second(memory_batches(images, gen.batch_size), n)
            ),
        },
        rounds=5,
    )
    return {name: n / s for name, s in seconds.items()}
