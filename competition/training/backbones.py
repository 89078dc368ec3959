"""The backbones a model can be built on, by name: every image-classification
model of `keras.applications` by its Keras name (EfficientNetB3,
ConvNeXtSmall, ...; the kit's first snake-case names stay as aliases),
`tiny_cnn` for tests and CPU runs, and `hub:<folder>`, a KerasHub backbone
saved as a preset in a local folder.

Each builder takes the model's input tensor (windowed images, 0..255) and the
weights (None, 'imagenet' or a local file) and returns a Keras model to its
last feature map. The backbone's own input preprocessing is inside, as
serializable layers, so every backbone takes the same 0..255 input and a
checkpoint predicts with no preprocessing outside the model. Keras is
imported by the builders, so the names can be read (by the config) without
loading TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass

HUB_PREFIX = "hub:"


@dataclass(frozen=True)
class Preprocessing:
    """How a family's ImageNet weights want their input, from 0..255 RGB."""

    expects: str  # the range the first layer sees, for the docs and `make backbones`
    mean: tuple[float, ...] | None = None  # None: the application preprocesses inside
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    reverse_channels: bool = False


INSIDE = Preprocessing("0..255 RGB (the application rescales and normalises inside)")
CAFFE = Preprocessing(
    "BGR, ImageNet mean subtracted, not scaled",
    mean=(103.939, 116.779, 123.68),
    reverse_channels=True,
)
TF = Preprocessing("-1..1 RGB (x / 127.5 - 1)", mean=(1.0, 1.0, 1.0), scale=127.5)
TORCH = Preprocessing(
    "0..1 RGB normalised by the ImageNet mean and std",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    scale=255.0,
)


def _family(name: str) -> Preprocessing:
    """keras.applications' preprocess_input mode of each model, by name."""
    if name.startswith(("ConvNeXt", "EfficientNet", "MobileNetV3")):
        return INSIDE
    if name.startswith("DenseNet"):
        return TORCH
    if name.startswith(("VGG", "ResNet")) and not name.endswith("V2"):
        return CAFFE
    return TF  # Inception*, Xception, MobileNet(V2), NASNet*, ResNet*V2


# Every image-classification model in keras.applications (Keras 3.13).
APPLICATIONS = (
    *(f"ConvNeXt{s}" for s in ("Tiny", "Small", "Base", "Large", "XLarge")),
    "DenseNet121",
    "DenseNet169",
    "DenseNet201",
    *(f"EfficientNetB{i}" for i in range(8)),
    *(f"EfficientNetV2{s}" for s in ("B0", "B1", "B2", "B3", "S", "M", "L")),
    "InceptionResNetV2",
    "InceptionV3",
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Small",
    "MobileNetV3Large",
    "NASNetMobile",
    "NASNetLarge",
    *(f"ResNet{d}" for d in (50, 101, 152)),
    *(f"ResNet{d}V2" for d in (50, 101, 152)),
    "VGG16",
    "VGG19",
    "Xception",
)
# The smallest input each family's layers take (valid-padded stems).
MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
ALIASES = {
    "efficientnet_b0": "EfficientNetB0",
    "efficientnetv2_b0": "EfficientNetV2B0",
    "resnet50": "ResNet50",
    "convnext_tiny": "ConvNeXtTiny",
}


def tiny_cnn(inputs, weights):
    """Four conv blocks: for tests and CPU runs. Its BatchNormalization
    moving statistics follow the batches faster than Keras' default
    (momentum 0.9, not 0.99): a small model on a small stand-in trains a few
    hundred steps, after which 0.99 still holds 0.99^300 = 5% of the initial
    statistics, and a run of 120 steps a third (measured on the APTOS
    stand-in: validation predictions collapsed to one value, kappa 0.00;
    with 0.9, kappa 0.82)."""
    import keras

    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for filters in (16, 32, 64, 96):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    backbone = keras.Model(inputs, x, name="tiny_cnn")
    if weights is not None:
        backbone.load_weights(weights)
    return backbone


def normalize(inputs, preprocessing: Preprocessing, name: str):
    """The 0..255 input as the weights want it (a serializable layer)."""
    from competition.training.layers import ChannelNormalize

    return ChannelNormalize(
        preprocessing.mean,
        preprocessing.std,
        scale=preprocessing.scale,
        reverse_channels=preprocessing.reverse_channels,
        name=f"{name}_input",
    )(inputs)


def application(name: str, alias: str | None = None):
    """A keras.applications model on the 0..255 input, its preprocessing inside."""
    preprocessing = _family(name)

    def build(inputs, weights):
        import keras

        factory = getattr(keras.applications, name)
        if preprocessing is INSIDE:
            # Built on the input itself (the kit's first checkpoints have this shape).
            return factory(include_top=False, weights=weights, input_tensor=inputs)
        x = normalize(inputs, preprocessing, alias or name.lower())
        base = factory(include_top=False, weights=weights, input_tensor=x)
        return keras.Model(inputs, base.output, name=alias or name.lower())

    build.__name__ = name
    return build


def canonical(name: str) -> str:
    """The Keras name behind an alias (hub: names and tiny_cnn unchanged)."""
    return ALIASES.get(name, name)


def preprocessing_of(name: str) -> Preprocessing | None:
    """What a keras.applications backbone's first layer sees; None for the others."""
    name = canonical(name)
    return _family(name) if name in APPLICATIONS else None


def builder(name: str):
    """The builder of a backbone name: Keras name, alias or tiny_cnn
    (hub:<folder>: competition.training.hub.hub_backbone)."""
    if name == "tiny_cnn":
        return tiny_cnn
    if name in ALIASES:
        return application(ALIASES[name], alias=name)
    return application(name)


BACKBONE_NAMES = ("tiny_cnn", *ALIASES, *APPLICATIONS)


def label(name: str) -> str:
    """A name Keras takes for a model: hub:<folder> -> hub_<folder's name>."""
    if name.startswith(HUB_PREFIX):
        return "hub_" + name[len(HUB_PREFIX) :].rstrip("/").split("/")[-1]
    return name


def is_known(name: str) -> bool:
    return name in BACKBONE_NAMES or (name.startswith(HUB_PREFIX) and len(name) > len(HUB_PREFIX))
