"""The configured augmentation as Keras layers (see competition.augmentation
for the list and where each step runs):

- `augmenter`: the in-graph image layers as one Sequential, each layer
  seeded from the config's seed and its position, float32 whatever the
  precision policy (0..255 values; float16 would round them);
- `TrainingModel`: the network with the augmenter in front and the label
  mixing (MixUp, CutMix) in its training step. Only the network inside it
  (`.network`) is saved as the checkpoint: the inference model holds no
  augmentation, and loads in safe mode.
"""

from __future__ import annotations

import keras

from competition.augmentation import Step, placement

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
    """image -> augmentation (training only) -> network; MixUp/CutMix in the
    training step. Its weights (backups) include the layers' seed states;
    `network` is what is saved for inference."""

    def __init__(self, network: keras.Model, augmenter_: keras.Sequential | None, mixers_):
        inputs = keras.Input(shape=network.input_shape[1:], name="image")
        x = augmenter_(inputs) if augmenter_ is not None else inputs
        super().__init__(inputs, network(x), name=f"train_{network.name}")
        self.network, self.mixers = network, list(mixers_)

    def train_step(self, data):
        if self.mixers:
            x, y, weights = keras.utils.unpack_x_y_sample_weight(data)
            x, y = mix(self.mixers, x, y)
            data = (x, y) if weights is None else (x, y, weights)
        return super().train_step(data)


def training_model(network: keras.Model, augment: list[dict] | None, seed: int) -> keras.Model:
    """The network itself when nothing runs in the graph, else a TrainingModel."""
    aug = augmenter(augment or [], seed)
    mixing = mixers(augment or [], seed)
    if aug is None and not mixing:
        return network
    return TrainingModel(network, aug, mixing)


def inference_network(model: keras.Model) -> keras.Model:
    """What a checkpoint holds: the network without the augmentation."""
    return getattr(model, "network", model)
