from __future__ import annotations

import keras
import numpy as np
import pytest

from competition.config import ModelConfig
from competition.model import ModelError, build_model, prevalence_bias


@pytest.mark.parametrize("backbone", ["tiny_cnn", "efficientnet_b0", "resnet50"])
def test_backbones_build_and_reload_in_safe_mode(backbone, tmp_path):
    prevalence = np.array([0.01, 0.05, 0.04, 0.05, 0.06, 0.14])
    model = build_model(ModelConfig(backbone=backbone, weights=None), (64, 64, 3), prevalence)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    y = model.predict(x, verbose=0)
    assert y.shape == (2, 6) and y.dtype == np.float32
    bias = model.get_layer("subtypes").get_weights()[1]
    np.testing.assert_allclose(bias, prevalence_bias(prevalence), rtol=1e-6)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)


def test_local_weights_file_is_loaded(tmp_path):
    first = build_model(ModelConfig(backbone="tiny_cnn"), (32, 32, 3))
    path = tmp_path / "tiny.weights.h5"
    keras.Model(first.input, first.get_layer("pool").input).save_weights(path)
    second = build_model(ModelConfig(backbone="tiny_cnn", weights=str(path)), (32, 32, 3))
    kernels = [[w.numpy() for w in m.weights if "conv2d" in w.path] for m in (first, second)]
    assert len(kernels[0]) == 4
    for a, b in zip(*kernels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no weights file at"):
        build_model(ModelConfig(backbone="tiny_cnn", weights=str(tmp_path / "x.h5")), (32, 32, 3))
