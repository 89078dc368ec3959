"""The backbones a model can be built on, by name. Each builder takes the
model's input tensor (windowed images, 0..255) and the weights (None,
'imagenet' or a local file) and returns a Keras model to its last feature
map; the backbone's own input preprocessing is inside, as serializable
layers. Keras is imported by the builders, so the names can be read (by the
config) without loading TensorFlow."""

from __future__ import annotations


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


def resnet50(inputs, weights):
    import keras

    from competition.training.layers import ChannelNormalize

    x = ChannelNormalize([103.939, 116.779, 123.68], [1, 1, 1], reverse_channels=True)(inputs)
    base = keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=x)
    return keras.Model(inputs, base.output, name="resnet50")


def _application(factory_name: str):
    """A keras.applications model that rescales its 0..255 input itself."""

    def build(inputs, weights):
        import keras

        factory = getattr(keras.applications, factory_name)
        return factory(include_top=False, weights=weights, input_tensor=inputs)

    build.__name__ = factory_name
    return build


BACKBONES = {
    "efficientnet_b0": _application("EfficientNetB0"),
    "efficientnetv2_b0": _application("EfficientNetV2B0"),
    "resnet50": resnet50,
    "convnext_tiny": _application("ConvNeXtTiny"),
    "tiny_cnn": tiny_cnn,
}
BACKBONE_NAMES = tuple(BACKBONES)
