from __future__ import annotations

import keras
import numpy as np
import pytest

from competition.config import load_config
from competition.errors import KitError
from competition.training.model import build_model, initial_bias
from competition.training.settings import ModelConfig

from helpers import REPO

RSNA = load_config(REPO / "configs" / "rsna_ich.yaml").task
TWO_HEADS = load_config(
    REPO / "configs" / "small.yaml",
    [
        "task.heads=[{name: grade, kind: ordinal, columns: [any], classes: [0, 1]},"
        " {name: kind, kind: multiclass, columns: [subdural], classes: [0, 1, 2]},"
        " {name: lesions, kind: multilabel, columns: [epidural, intraventricular]}]",
        "task.labels.derived=[]",
        "task.metric.head=lesions",
        "task.stratify=epidural",
        "task.submission.postprocess=[clip]",
    ],
).task


def assert_reloads_the_same(model, x, y, tmp_path) -> None:
    """Saved and loaded in safe mode, the model predicts what it did."""
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backbone", ["tiny_cnn", "efficientnet_b0", "resnet50"])
def test_backbones_build_and_reload_in_safe_mode(backbone, tmp_path):
    prevalence = np.array([0.01, 0.05, 0.04, 0.05, 0.06, 0.14])
    model = build_model(ModelConfig(backbone=backbone, weights=None), (64, 64, 3), RSNA, prevalence)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    y = model.predict(x, verbose=0)
    assert y.shape == (2, 6) and y.dtype == np.float32
    bias = model.get_layer("subtypes").get_weights()[1]
    np.testing.assert_allclose(bias, np.log(prevalence / (1 - prevalence)), rtol=1e-5)
    assert_reloads_the_same(model, x, y, tmp_path)


def test_heads_sit_side_by_side_in_the_task_order():
    mean = np.array([0.4, 0.2, 0.5, 0.3, 0.1, 0.3])  # ordinal, 3 classes, 2 labels
    model = build_model(ModelConfig(backbone="tiny_cnn"), (32, 32, 3), TWO_HEADS, mean)
    assert TWO_HEADS.outputs == ["any", "subdural=0", "subdural=1", "subdural=2", "epidural",
                                 "intraventricular"]  # fmt: skip
    out = model.predict(np.zeros((3, 32, 32, 3), np.float32), verbose=0)
    assert out.shape == (3, 6)
    np.testing.assert_allclose(out[:, 1:4].sum(axis=1), 1, rtol=1e-5)  # softmax
    assert ((out[:, 4:] > 0) & (out[:, 4:] < 1)).all()  # sigmoids
    np.testing.assert_allclose(model.get_layer("grade").get_weights()[1], [0.4], rtol=1e-6)
    np.testing.assert_allclose(
        model.get_layer("kind").get_weights()[1], np.log([0.2, 0.5, 0.3]), rtol=1e-5
    )
    assert initial_bias(TWO_HEADS.heads[2], None).tolist() == [0, 0]


def test_local_weights_file_is_loaded(tmp_path):
    first = build_model(ModelConfig(backbone="tiny_cnn"), (32, 32, 3), RSNA)
    path = tmp_path / "tiny.weights.h5"
    keras.Model(first.input, first.get_layer("pool").input).save_weights(path)
    second = build_model(ModelConfig(backbone="tiny_cnn", weights=str(path)), (32, 32, 3), RSNA)
    kernels = [[w.numpy() for w in m.weights if "conv2d" in w.path] for m in (first, second)]
    assert len(kernels[0]) == 4
    for a, b in zip(*kernels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    cfg = ModelConfig(backbone="tiny_cnn", weights=str(tmp_path / "x.h5"))
    with pytest.raises(KitError, match="no weights file at"):
        build_model(cfg, (32, 32, 3), RSNA)


@pytest.mark.parametrize("pooling", ["max", "gem"])
def test_other_poolings_build_and_reload_in_safe_mode(pooling, tmp_path):
    model = build_model(ModelConfig(backbone="tiny_cnn", pooling=pooling), (32, 32, 3), RSNA)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    y = model.predict(x, verbose=0)
    assert_reloads_the_same(model, x, y, tmp_path)
    if pooling == "gem":  # between the mean and the max of the feature map
        features = keras.Model(model.input, model.get_layer("pool").input).predict(x, verbose=0)
        pooled = keras.Model(model.input, model.get_layer("pool").output).predict(x, verbose=0)
        assert (pooled >= features.mean(axis=(1, 2)) - 1e-5).all()
        assert (pooled <= features.max(axis=(1, 2)) + 1e-5).all()


def test_pretrained_weights_with_other_than_three_channels_say_what_to_do():
    cfg = ModelConfig(backbone="efficientnet_b0", weights="imagenet")  # nothing is downloaded
    with pytest.raises(KitError, match=r"input has 1 channel.*input_adapter=repeat.*project"):
        build_model(cfg, (32, 32, 1), RSNA)
    with pytest.raises(KitError, match="copies 1 or 2 channels"):
        build_model(ModelConfig(weights="imagenet", input_adapter="repeat"), (32, 32, 9), RSNA)


def test_the_repeat_adapter_copies_grey_to_every_channel():
    from competition.training.layers import ToRGB

    grey = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 1)).astype(np.uint8)
    rgb = keras.ops.convert_to_numpy(ToRGB("repeat")(grey))
    assert rgb.shape == (2, 8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], grey[..., 0])


@pytest.mark.slow
def test_an_input_adapter_feeds_a_pretrained_backbone_and_reloads(tmp_path):
    """A local 3-channel weights file (as ImageNet's would be) loads under a
    9-channel (2.5D) input through the project adapter; the model reloads in
    safe mode and predicts the same."""
    adapter, channels = "project", 9
    base = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = tmp_path / "b0_notop.weights.h5"
    base.save_weights(path)
    cfg = ModelConfig(backbone="efficientnet_b0", weights=str(path), input_adapter=adapter)
    model = build_model(cfg, (32, 32, channels), RSNA)
    loaded = [w for w in model.weights if w.path.endswith("stem_conv/kernel")]
    np.testing.assert_array_equal(loaded[0].numpy(), base.get_layer("stem_conv").kernel.numpy())
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, channels)).astype(np.uint8)
    y = model.predict(x, verbose=0)
    assert_reloads_the_same(model, x, y, tmp_path)
