"""The configured augmentation as Keras layers, on every Keras backend
(see competition.augment.spec for the list and where each step runs):

- `augmenter`: the image layers as one Sequential, each layer seeded from
  the config's seed and its position, float32 whatever the precision policy
  (0..255 values; float16 would round them);
- `TrainingModel`: what the kit trains. In its training call the image layers
  (when they run in the graph) and then the label mixing (MixUp, CutMix:
  their public per-batch API, `get_random_transformation` and
  `transform_images`) run in front of the network, and the same
  transformation mixes the labels in `compute_loss`; both are called the
  same way by every backend's training step, so no backend-specific
  `train_step` is written. The layers' seed states are the model's state
  (carried by JAX's stateless step, held in the epoch backups). Only the
  network (`.network`) is saved as the checkpoint: the inference model holds
  no augmentation, and loads in safe mode. Its fit, evaluate and predict
  raise a loader's error as the kit's error.
- `HostAugmenter`: the image layers run by the loader on the host instead
  (`train.augment_on: host`, and `auto` on a machine without an
  accelerator), through the same public per-batch API on the CPU, each
  batch's draws seeded from its key. Measured on 2 CPU cores: in the graph,
  the layers' image transforms run single-threaded between the network's
  multi-threaded ops, and the default 2.5D fit went from 0.31 to 0.5-1.0 s
  per step; in the loader's thread they overlap the step.
"""

from __future__ import annotations

import keras
import numpy as np

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
    """image -> [image layers] -> [MixUp, CutMix] -> network, in training;
    the network alone otherwise (see the module)."""

    def __init__(
        self, network: keras.Model, augmenter_: keras.Sequential | None, mixers_, slice_head=None
    ):
        super().__init__(name=f"train_{network.name}")
        self.network, self.augmenter, self.mixers = network, augmenter_, list(mixers_)
        self.slice_head = slice_head  # competition.training.slice_head.SliceHead, or None
        # This step's transformations and slice logits, for compute_loss:
        # tensors of the step's trace, not state (set past Keras' attribute tracking).
        object.__setattr__(self, "_untracked_mixes", [])
        object.__setattr__(self, "_untracked_slice_logits", None)
        self.build(network.input_shape)

    def build(self, input_shape):
        image_shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        if self.augmenter is not None:
            self.augmenter.build(image_shape)
        for layer in self.mixers:
            layer.build(image_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        if isinstance(inputs, list | tuple):  # (images, metadata): the layers see the images
            images, extra = inputs
            return self.network([self._augmented(images, training), extra], training=training)
        return self._on_images(inputs, training)

    def _augmented(self, x, training):
        """The in-graph image layers alone (no label mixing beside metadata)."""
        if training and self.augmenter is not None:
            x = self.augmenter(keras.ops.cast(x, "float32"), training=True)
        object.__setattr__(self, "_untracked_mixes", [])
        object.__setattr__(self, "_untracked_slice_logits", None)
        return x

    def _on_images(self, inputs, training):
        x, mixes = inputs, []
        if training and (self.augmenter is not None or self.mixers):
            x = keras.ops.cast(x, "float32")
            if self.augmenter is not None:
                x = self.augmenter(x, training=True)
            for layer in self.mixers:
                transformation = layer.get_random_transformation(x, training=True)
                x = layer.transform_images(x, transformation, training=True)
                mixes.append((layer, transformation))
        object.__setattr__(self, "_untracked_mixes", mixes)
        object.__setattr__(self, "_untracked_slice_logits", None)
        if training and self.slice_head is not None:
            outputs, logits = self.slice_head(x, training=training)
            object.__setattr__(self, "_untracked_slice_logits", logits)
            return outputs
        return self.network(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The task's loss against the labels mixed as the images were (and
        the per-slice head's, where the batch carries slice targets)."""
        slices = None
        if self.slice_head is not None:
            y, slices = self.slice_head.split(y)
        for layer, transformation in self._untracked_mixes if training else []:
            y = layer.transform_labels(y, transformation, training=True)
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        logits = self._untracked_slice_logits
        if slices is not None and logits is not None:
            loss = loss + self.slice_head.loss(slices, logits)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The metrics of the unit's outputs (slice targets left out)."""
        if self.slice_head is not None:
            y, _ = self.slice_head.split(y)
        return super().compute_metrics(x, y, y_pred, sample_weight)

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
    network: keras.Model,
    augment: list[dict] | None,
    seed: int,
    image_layers: bool = True,
    slice_head=None,
) -> TrainingModel:
    """The network with the in-graph image layers in front and the label
    mixing in its step (`image_layers=False`: the image layers run on the
    host instead, mixing stays); `slice_head`: an auxiliary per-slice head
    trained beside it (competition.training.slice_head)."""
    aug = augmenter(augment or [], seed) if image_layers else None
    return TrainingModel(network, aug, mixers(augment or [], seed), slice_head)


def image_layers_on(setting: str, worker_processes: bool = False) -> str:
    """graph or host: `train.augment_on`, with auto = graph where an
    accelerator is, or where the loader's workers are processes (a backend
    does not run in a forked process: the host placement is for thread
    workers)."""
    from competition.training.devices import accelerators

    if setting != "auto":
        return setting
    return "graph" if worker_processes or accelerators() else "host"


class HostAugmenter:
    """The image layers on a host batch: uint8 in, float32 out, on the CPU
    whatever the accelerator. Each layer draws from a seed generator made for
    the batch from its key (the generator's seed for that batch), so the
    draws do not depend on which worker thread runs it, or when."""

    def __init__(self, layers: list[keras.layers.Layer]):
        self.layers = list(layers)

    def __call__(self, batch: np.ndarray, key: int) -> np.ndarray:
        with keras.device("cpu:0"):
            x = keras.ops.convert_to_tensor(batch, "float32")  # the backend's own (PyTorch's
            # layers do not take numpy arrays)
            for i, layer in enumerate(self.layers):
                seed = int(np.random.default_rng([key, i]).integers(2**31))
                draws = keras.random.SeedGenerator(seed)
                transformation = layer.get_random_transformation(x, training=True, seed=draws)
                x = layer.transform_images(x, transformation, training=True)
            return keras.ops.convert_to_numpy(x).astype(np.float32, copy=False)


def host_augmenter(augment: list[dict] | None, seed: int) -> HostAugmenter | None:
    layers = augmenter(augment or [], seed)
    return HostAugmenter(layers.layers) if layers is not None else None


def inference_network(model: keras.Model) -> keras.Model:
    """What a checkpoint holds: the network without the augmentation."""
    return getattr(model, "network", model)
