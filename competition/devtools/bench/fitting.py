"""`fit` and `predict` fed by the kit's generator against the same images
in memory, with the augmentation in the graph and on the host."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from competition.config import Config
from competition.devtools.bench.loading import FLIPS
from competition.devtools.bench.timing import epoch_seconds, fastest, timed


def fit_rates(model, gen, x, labels, others: dict | None = None) -> dict:
    """fit steps/s fed by the generator vs by the same images in memory, and
    of `others` (name -> (model, generator)), alternating with them."""
    runs = {
        "pipeline": lambda: epoch_seconds(model, gen),
        "memory": lambda: epoch_seconds(model, x, y=labels, batch_size=gen.batch_size),
    }
    for name, (other, feed) in (others or {}).items():
        runs[name] = lambda other=other, feed=feed: epoch_seconds(other, feed)
    return {name: len(gen) / s for name, s in fastest(runs).items()}


def augmented_runs(config: Config, network, ids, source, labels) -> dict:
    """(model, generator) pairs: the config's whole augmentation (host flips,
    mixing, and the image layers in the graph or on the host), and flips
    alone in the graph vs on the host (the evidence for where each runs)."""
    import keras

    from competition.augment.layers import TrainingModel, host_augmenter, training_model
    from competition.augment.spec import placement
    from competition.pipeline.generators import generator as kit_generator
    from competition.training.devices import jit_compile
    from competition.training.losses import compile_args

    def generator(flips, host=None):
        return kit_generator(config, ids, source, labels, flips=flips, host=host)

    def compiled(model):
        model.compile("adam", compile_args(config.task)["loss"], jit_compile=jit_compile("auto"))
        return model

    graph_flip = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=0)])
    flips = placement(config.augment).host_flips
    return {
        "augmented_graph": (
            compiled(training_model(network, config.augment, config.seed)),
            generator(flips),
        ),
        "augmented_host": (
            compiled(training_model(network, config.augment, config.seed, image_layers=False)),
            generator(flips, host_augmenter(config.augment, config.seed)),
        ),
        "flips_host": (compiled(network), generator(FLIPS)),
        "flips_graph": (compiled(TrainingModel(network, graph_flip, [])), generator(None)),
    }


def predict_rates(model, gen, x) -> dict:
    """predict images/s from the generator vs from the same images in memory."""
    seconds = fastest(
        {
            "pipeline": lambda: timed(lambda: model.predict(gen, verbose=0)),
            "memory": lambda: timed(lambda: model.predict(x, batch_size=gen.batch_size, verbose=0)),
        },
    )
    return {feed: len(x) / s for feed, s in seconds.items()}


def fit_and_predict(config: Config, ids, cached, images, backbones, label: str = "") -> dict:
    import keras

    from competition.pipeline.generators import generator
    from competition.training.devices import jit_compile
    from competition.training.losses import compile_args
    from competition.training.model import build_model

    outputs = len(config.task.outputs)
    labels = np.random.default_rng(0).integers(0, 2, (len(ids), outputs)).astype(np.float32)
    x = images.astype(np.float32)
    result = {}
    for backbone in backbones:
        keras.utils.set_random_seed(0)
        model_config = replace(config.model, backbone=backbone, weights=None)
        model = build_model(model_config, images.shape[1:], config.task)
        model.compile("adam", compile_args(config.task)["loss"], jit_compile=jit_compile("auto"))
        gen = generator(config, ids, cached, labels)
        others = None if label else augmented_runs(config, model, ids, cached, labels)
        for feed, rate in fit_rates(model, gen, x, labels, others).items():
            result[f"fit_{feed}_steps_per_s{label}[{backbone}]"] = rate
        if backbone == backbones[0] and not label:
            gen = generator(config, ids, cached)
            for feed, rate in predict_rates(model, gen, x).items():
                result[f"predict_{feed}_images_per_s"] = rate
        keras.backend.clear_session()
    return result
