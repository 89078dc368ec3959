"""The configured augmentation as Keras layers (see competition.augment.spec
for the list and where each step runs):

- `augmenter`: the in-graph image layers as one Sequential, each layer
  seeded from the config's seed and its position, float32 whatever the
  precision policy (0..255 values; float16 would round them);
- `TrainingModel`: the network with the augmenter in front and the label
  mixing (MixUp, CutMix) in its training step. Only the network inside it
  (`.network`) is saved as the checkpoint: the inference model holds no
  augmentation, and loads in safe mode. Its fit, evaluate and predict raise
  a loader's error as the kit's error.
- `HostAugmenter`: the same image layers run by the loader on the host
  instead (`train.augment_on: host`, and `auto` on a machine without a
  GPU). Measured on 2 CPU cores: in the graph, the layers' image transforms
  run single-threaded between the network's multi-threaded ops, and the
  default 2.5D fit went from 0.31 to 0.5-1.0 s per step; in the loader's
  thread they overlap the step, as the hand-written OpenCV affine did.
"""

from __future__ import annotations

import threading

import keras
import numpy as np
import tensorflow as tf

from competition.augment.spec import Step, placement
from competition.data.generator import DataGenerator, surfacing_load_errors

VALUE_RANGE = (0, 255)


def _layer(step: Step, seed: int) -> keras.layers.Layer:
    cls = getattr(keras.layers, step.name)
    kwargs = dict(step.arguments)
    kwargs["seed"] = seed
    if "value_range" in cls.__init__.__code__.co_varnames:
        kwargs["value_range"] = VALUE_RANGE
    for name, value in kwargs.items():
        if isinstance(value, list):
            kwargs[name] = tuple(value)
    return cls(dtype="float32", name=f"augment_{seed}_{step.name}", **kwargs)


def augmenter(augment: list[dict], seed: int) -> keras.Sequential | None:
    """The in-graph image layers in order, or None when there are none."""
    steps = placement(augment).in_graph
    if not steps:
        return None
    return keras.Sequential([_layer(s, seed + i) for i, s in enumerate(steps)], name="augmentation")


def mixers(augment: list[dict], seed: int) -> list[keras.layers.Layer]:
    """The label-mixing layers in order (applied to images and labels together)."""
    return [_layer(s, seed + 100 + i) for i, s in enumerate(placement(augment).mixing)]


def mix(layers_: list[keras.layers.Layer], x, y):
    """Images and labels through each mixing layer (Keras' dict convention)."""
    for layer in layers_:
        mixed = layer({"images": keras.ops.cast(x, "float32"), "labels": y}, training=True)
        x, y = mixed["images"], mixed["labels"]
    return x, y


class TrainingModel(keras.Model):
    """What the kit trains: image -> augmentation (training only) -> network,
    with MixUp/CutMix in the training step. Its weights (the epoch backups)
    include the layers' seed states; `network` is what is saved for
    inference (`save` saves it alone). Without in-graph layers it is the
    network's own graph (its backups are the network's).

    A plain `fit`, `evaluate` or `predict` on the kit's generators raises a
    loader's error as the kit's error naming the image (surfacing_load_errors),
    not as TensorFlow's wrapper of it."""

    def __init__(self, network: keras.Model, augmenter_: keras.Sequential | None, mixers_):
        if augmenter_ is None:
            super().__init__(network.inputs, network.outputs, name=f"train_{network.name}")
        else:
            inputs = keras.Input(shape=network.input_shape[1:], name="image")
            super().__init__(inputs, network(augmenter_(inputs)), name=f"train_{network.name}")
        self.network, self.mixers = network, list(mixers_)

    def train_step(self, data):
        if self.mixers:
            x, y, weights = keras.utils.unpack_x_y_sample_weight(data)
            x, y = mix(self.mixers, x, y)
            data = (x, y) if weights is None else (x, y, weights)
        return super().train_step(data)

    def fit(self, *args, **kwargs):
        with surfacing_load_errors(*_generators(args, kwargs)):
            return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        with surfacing_load_errors(*_generators(args, kwargs)):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        with surfacing_load_errors(*_generators(args, kwargs)):
            return super().predict(*args, **kwargs)

    def save(self, filepath, *args, **kwargs):
        """The checkpoint: the network alone (no augmentation layers)."""
        return self.network.save(filepath, *args, **kwargs)


def _generators(args: tuple, kwargs: dict) -> list[DataGenerator]:
    return [v for v in (*args, *kwargs.values()) if isinstance(v, DataGenerator)]


def training_model(
    network: keras.Model, augment: list[dict] | None, seed: int, image_layers: bool = True
) -> TrainingModel:
    """The network with the in-graph image layers in front and the label
    mixing in its step (`image_layers=False`: the image layers run on the
    host instead, mixing stays)."""
    aug = augmenter(augment or [], seed) if image_layers else None
    return TrainingModel(network, aug, mixers(augment or [], seed))


def image_layers_on(setting: str, worker_processes: bool = False) -> str:
    """graph or host: `train.augment_on`, with auto = graph where a GPU is, or
    where the loader's workers are processes (TensorFlow does not run in a
    forked process: the host placement is for thread workers)."""
    if setting != "auto":
        return setting
    gpu = bool(tf.config.list_logical_devices("GPU"))
    return "graph" if gpu or worker_processes else "host"


class HostAugmenter:
    """The image layers on a host batch: uint8 in, float32 out. Each batch's
    draws come from its own key (the generator's seed for that batch), set
    into the layers' seed states under a lock, so they do not depend on
    which worker thread runs it or when."""

    def __init__(self, layers: keras.Sequential):
        self.generators = [
            g
            for layer in layers._flatten_layers(include_self=False)
            for g in layer._seed_generators
        ]
        self.lock = threading.Lock()
        self.apply = tf.function(lambda x: layers(tf.cast(x, tf.float32), training=True))

    def __call__(self, batch: np.ndarray, key: int) -> np.ndarray:
        with self.lock:
            for i, generator in enumerate(self.generators):
                generator.state.assign(np.array([key, i], dtype=generator.state.dtype))
            return self.apply(batch).numpy()


def host_augmenter(augment: list[dict] | None, seed: int) -> HostAugmenter | None:
    layers = augmenter(augment or [], seed)
    return HostAugmenter(layers) if layers is not None else None


def inference_network(model: keras.Model) -> keras.Model:
    """What a checkpoint holds: the network without the augmentation."""
    return getattr(model, "network", model)
