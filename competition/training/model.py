"""The model: a backbone, global pooling (`model.pooling`), dropout, and one Dense
layer per task head (sigmoid for multilabel and binary heads, softmax for
multiclass, linear for ordinal), side by side in one float32 output in the
task's output order.

Every model takes the same input: windowed images in 0..255 (B, H, W, C),
uint8 or float32 (cast in-graph). The backbone's own input preprocessing is
inside the model, as serializable layers (no Lambda), so checkpoints load
with safe_mode=True.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np

from competition.errors import KitError
from competition.task import Head, TaskSpec
from competition.training import layers  # also registers the kit's layers for loading
from competition.training.backbones import HUB_PREFIX, builder, label
from competition.training.settings import ModelConfig

GATE = "backbone_gate"
ACTIVATIONS = {
    "multilabel": "sigmoid",
    "binary": "sigmoid",
    "multiclass": "softmax",
    "ordinal": None,
}


def resolve_weights(model_config: ModelConfig) -> str | None:
    """None, an existing local file (checked here, not deep in Keras), or
    'imagenet': the file `make weights` put in model.weights_dir when it is
    there (checked against its checksum), else Keras' own download."""
    if model_config.weights is None:
        return None
    if model_config.weights == "imagenet":
        if model_config.backbone.startswith(HUB_PREFIX):
            return "imagenet"  # the preset folder holds its weights
        from competition.training.weights_store import local_weights

        return local_weights(model_config.weights_dir, model_config.backbone) or "imagenet"
    path = Path(model_config.weights).expanduser()
    if not path.is_file():
        raise KitError(
            f"model.weights: no weights file at {path}. Expected null, imagenet, or the path "
            "of a local weights file (e.g. the backbone's *_notop.h5)."
        )
    return str(path)


def build_backbone(model_config: ModelConfig, inputs):
    weights = resolve_weights(model_config)
    try:
        name = model_config.backbone
        if name.startswith(HUB_PREFIX):
            from competition.training.hub import hub_backbone

            return hub_backbone(name[len(HUB_PREFIX) :], inputs, weights)
        return builder(name)(inputs, weights)
    except KitError:
        raise
    except Exception as exc:
        if weights != "imagenet":
            raise
        raise KitError(
            f"ImageNet weights for {model_config.backbone} could not be loaded "
            f"({type(exc).__name__}: {exc}), and {model_config.weights_dir}/ has none. "
            f"On a machine with internet run make weights BACKBONE={model_config.backbone} "
            f"WEIGHTS_DIR={model_config.weights_dir}, then bring that folder here (on Kaggle: "
            "attach it as a dataset and set model.weights_dir to its path)."
        ) from None


def backbone_features(model_config: ModelConfig, inputs, channels: int):
    """The backbone's last feature map for the image: the backbone built on
    the input itself, or, with model.input_adapter, on a 3-channel input fed
    by the adapter (a nested model: its weights save and load as a unit).
    Pretrained weights of an ImageNet backbone need 3 channels: another
    count without an adapter is refused here, with the ways out, not left to
    fail deep in Keras as if the download had."""
    pretrained = model_config.weights is not None and model_config.backbone != "tiny_cnn"
    if model_config.input_adapter == "none":
        if pretrained and channels != 3:
            raise KitError(
                f"model.weights={model_config.weights} gives {model_config.backbone} the first "
                f"layer of a 3-channel (RGB) network, but the model input has {channels} "
                "channel(s) (from preprocess: the windows, channels or 2.5D neighbours). Choose "
                "one: model.input_adapter=repeat (1 or 2 channels copied to 3), "
                "model.input_adapter=project (a learned 1x1 convolution to 3 channels, started "
                "at their mean), or model.weights=null (random initialisation, all channels)."
            )
        return build_backbone(model_config, inputs).output
    if model_config.input_adapter == "repeat" and channels > 3:
        raise KitError(
            f"model.input_adapter=repeat copies 1 or 2 channels to 3; the input has {channels}. "
            "Use model.input_adapter=project."
        )
    rgb = keras.Input(shape=(*inputs.shape[1:-1], 3), name="rgb")
    return build_backbone(model_config, rgb)(
        layers.ToRGB(model_config.input_adapter, name="to_rgb")(inputs)
    )


def _pooling(name: str, rank: int) -> keras.layers.Layer:
    """The feature map -> one vector: average, max, or generalised mean; a
    token sequence (a KerasHub ViT or DINOv2) -> its tokens' average or max."""
    if rank == 3:
        if name == "max":
            return keras.layers.GlobalMaxPooling1D(name="pool")
        return keras.layers.GlobalAveragePooling1D(name="pool")
    if name == "gem":
        return layers.GeMPooling2D(name="pool")
    if name == "max":
        return keras.layers.GlobalMaxPooling2D(name="pool")
    return keras.layers.GlobalAveragePooling2D(name="pool")


def initial_bias(head: Head, training_mean: np.ndarray | None) -> np.ndarray:
    """The head's starting bias, so that it first predicts the training mean:
    log-odds of the prevalence (sigmoid), log of the class shares (softmax),
    the mean class position (ordinal)."""
    if training_mean is None:
        return np.zeros(len(head.outputs), dtype=np.float32)
    training_mean = np.asarray(training_mean, dtype=np.float64)
    if head.kind == "ordinal":
        return training_mean.astype(np.float32)
    p = np.clip(training_mean, 1e-4, 1 - 1e-4)
    bias = np.log(p) if head.kind == "multiclass" else np.log(p / (1 - p))
    return bias.astype(np.float32)


def task_heads(task: TaskSpec, x, training_mean: np.ndarray | None):
    """The task's heads on the features `x`, side by side in one output;
    `training_mean` (the training targets' mean per output) sets the biases."""
    heads = []
    for head, part in task.head_slices():
        start = None if training_mean is None else np.asarray(training_mean)[part]
        several = len(head.softmaxes) > 1  # a softmax per column: activated after the Dense
        dense = keras.layers.Dense(
            len(head.outputs),
            activation=None if several else ACTIVATIONS[head.kind],
            dtype="float32",
            name=f"{head.name}_logits" if several else head.name,
            bias_initializer=keras.initializers.Constant(initial_bias(head, start)),
        )
        out = dense(x)
        if several:
            out = layers.SoftmaxEach(head.class_count, dtype="float32", name=head.name)(out)
        heads.append(out)
    return heads[0] if len(heads) == 1 else keras.layers.Concatenate(name="outputs")(heads)


def build_model(
    model_config: ModelConfig,
    input_shape: tuple[int, int, int],
    task: TaskSpec,
    training_mean: np.ndarray | None = None,
    gate: bool = False,
    metadata: dict | None = None,
) -> keras.Model:
    """Backbone + global pooling + dropout + the task's heads.
    `training_mean` (the training targets' mean per output) sets the biases;
    `gate`: a BackboneGate after the backbone (train.freeze_epochs);
    `metadata`: a MetadataBranch's arguments (width, mean, std, vocabularies):
    a second input whose features join the image's before the heads.
    A stack of slices (series- and study-level tasks) takes
    competition.training.series.build_network."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = slice_features(model_config, inputs, gate)
    x = keras.layers.Dropout(model_config.dropout, name="dropout")(x)
    if metadata is not None:
        extra = keras.Input(shape=(metadata["width"],), name="metadata")
        branch = layers.MetadataBranch(metadata["mean"], metadata["std"],
                                       metadata["vocabularies"], model_config.metadata_units,
                                       name="metadata_branch")(extra)  # fmt: skip
        x = keras.layers.Concatenate(name="image_and_metadata")([x, branch])
        inputs = [inputs, extra]
    outputs = task_heads(task, x, training_mean)
    return keras.Model(inputs, outputs, name=f"{label(model_config.backbone)}_{task.name}")


def metadata_vocabularies(model: keras.Model) -> dict | None:
    """The vocabularies of a checkpoint's metadata branch (None without one)."""
    try:
        return model.get_layer("metadata_branch").vocabularies
    except ValueError:
        return None


def slice_features(model_config: ModelConfig, inputs, gate: bool = False):
    """The backbone's pooled features of an image (gated: see BackboneGate)."""
    features = backbone_features(model_config, inputs, inputs.shape[-1])
    if gate:
        features = layers.BackboneGate(name=GATE)(features)
    return _pooling(model_config.pooling, len(features.shape))(features)


def check_input_shape(model: keras.Model, shape: tuple[int, int, int], outputs: int, source: str):
    """A checkpoint trained at another size or with other outputs is refused."""
    image_shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    got, given = tuple(image_shape[1:]), model.output_shape[-1]
    if got != tuple(shape) or given != outputs:
        raise KitError(
            f"{source}: the model takes {got} and gives {given} outputs; the config needs "
            f"{tuple(shape)} and {outputs}"
        )


def load_checkpoint(path, safe_mode: bool = True) -> keras.Model:
    """A saved model for inference. In safe mode (the default) no code from
    the file runs: a file that carries some (a Lambda layer) is refused."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"No model file at {path}")
    try:
        return keras.models.load_model(path, safe_mode=safe_mode, compile=False)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        if "safe_mode" in str(exc):
            raise KitError(
                f"{path} holds Python code (a Lambda layer), which would run when it is "
                "loaded, so it was refused. If you trust the file (you made it, or know who "
                "did), load it with --set model.safe_mode=false."
            ) from None
        raise KitError(f"{path} is not a readable Keras model file ({exc})") from None
