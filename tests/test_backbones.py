"""Backbones: every keras.applications model builds with its preprocessing
inside; a KerasHub preset saved with save_to_preset trains and predicts from
its folder; pretrained files come from a checksummed weights folder, and a
missing or corrupt one is named with the command that fetches it again."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import keras
import numpy as np
import pytest

from competition.errors import KitError
from competition.training import backbones
from competition.training.backbones import APPLICATIONS, MIN_SIZE, builder
from competition.training.model import resolve_weights
from competition.training.settings import ModelConfig
from competition.training.weights_store import CHECKSUMS, store_application

SIDE = 64


def build_all(names: list[str]) -> list[tuple[str, tuple, str]]:
    """(name, feature map shape, first layer's class) of each, built at 64 px
    (or the family's minimum) with random weights."""
    found = []
    for name in names:
        keras.backend.clear_session()
        side = max(SIDE, MIN_SIZE.get(name, 0))
        model = builder(name)(keras.Input((side, side, 3)), None)
        first = model.layers[1].__class__.__name__
        found.append((name, tuple(model.output.shape), first))
    return found


def test_every_keras_application_builds_at_64_px_with_random_weights():
    """All 40 image classifiers of keras.applications, two processes at a time."""
    halves = [list(APPLICATIONS[0::2]), list(APPLICATIONS[1::2])]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        built = [row for rows in pool.map(build_all, halves) for row in rows]
    assert sorted(name for name, _, _ in built) == sorted(APPLICATIONS)
    assert len(APPLICATIONS) == 40
    for name, shape, first in built:
        assert len(shape) == 4 and shape[1] >= 1 and shape[3] >= 256, (name, shape)
        outside = backbones.preprocessing_of(name).mean is not None
        assert (first == "ChannelNormalize") == outside, (name, first)


@pytest.mark.parametrize(
    "name, module",
    [("ResNet50", "resnet"), ("VGG16", "vgg16"), ("MobileNetV2", "mobilenet_v2"),
     ("Xception", "xception"), ("ResNet50V2", "resnet_v2"), ("DenseNet121", "densenet"),
     ("NASNetMobile", "nasnet"), ("InceptionV3", "inception_v3")],
)  # fmt: skip
def test_the_input_layer_does_what_the_applications_preprocess_input_does(name, module):
    """The kit's layer in front of the weights equals Keras' own preprocess_input
    on the same 0..255 RGB images (caffe, tf and torch modes)."""
    from competition.training.backbones import normalize, preprocessing_of

    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = keras.ops.convert_to_numpy(normalize(images, preprocessing_of(name), "x"))
    reference = getattr(keras.applications, module).preprocess_input(images.copy())
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(reference), rtol=1e-5, atol=1e-4)


def test_efficientnet_and_convnext_take_0_to_255_themselves():
    for name in ("EfficientNetB3", "EfficientNetV2S", "ConvNeXtSmall", "MobileNetV3Small"):
        assert backbones.preprocessing_of(name).mean is None


def write_tiny_preset(folder: Path) -> Path:
    """A real KerasHub ResNet preset (save_to_preset) and its image converter's
    JSON as KerasHub writes it (ImageNet mean and std on 0..1)."""
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3),
    )  # fmt: skip
    backbone.save_to_preset(str(folder))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    converter = {
        "module": "keras_hub.src.models.resnet.resnet_image_converter",
        "class_name": "ResNetImageConverter",
        "config": {"name": "resnet_image_converter", "image_size": [32, 32],
                   "scale": list(1 / (255 * std)), "offset": list(-mean / std)},
        "registered_name": "keras_hub>ResNetImageConverter",
    }  # fmt: skip
    (folder / "image_converter.json").write_text(json.dumps(converter))
    return folder


def test_a_kerashub_preset_from_a_local_folder_rescales_as_its_converter_says(tmp_path):
    from competition.training.hub import hub_backbone

    folder = write_tiny_preset(tmp_path / "tiny_resnet")
    model = hub_backbone(str(folder), keras.Input((32, 32, 3)), "imagenet")
    normalize = model.get_layer("hub_input")
    images = np.full((1, 4, 4, 3), 255.0, "float32")
    got = keras.ops.convert_to_numpy(normalize(images))[0, 0, 0]
    np.testing.assert_allclose(got, (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-5)  # fmt: skip
    assert model.output.shape[-1] == 32
    with pytest.raises(KitError, match="no KerasHub preset there"):
        hub_backbone(str(tmp_path / "absent"), keras.Input((32, 32, 3)), None)


@pytest.mark.slow
def test_training_and_predicting_on_a_kerashub_preset(small_competition, tmp_path):
    """model.backbone=hub:<folder> through the CLI: the preset's weights
    loaded, a fold trained and its checkpoint predicting the test set."""
    from competition.cli import main

    folder = write_tiny_preset(tmp_path / "tiny_resnet")
    settings = [f"data.root={small_competition.data.root}", f"runs_dir={tmp_path / 'runs'}",
                f"model.backbone=hub:{folder}", "model.weights=imagenet", "train.epochs=1",
                "train.workers=0", f"predict.submissions_dir={tmp_path / 'subs'}"]  # fmt: skip
    args = ["--config", "configs/small.yaml", *(a for s in settings for a in ("--set", s))]
    assert main(["train", "--fold", "0", *args]) == 0
    assert main(["predict", *args]) == 0
    assert (tmp_path / "subs" / "submission.csv").is_file()


def test_imagenet_weights_come_from_the_checked_weights_folder(tmp_path):
    keras.backend.clear_session()
    model = keras.applications.MobileNetV3Small(include_top=False, weights=None)
    path = store_application(model, tmp_path, "MobileNetV3Small")
    config = ModelConfig(backbone="MobileNetV3Small", weights="imagenet", weights_dir=str(tmp_path))
    assert resolve_weights(config) == str(path)
    assert path.name in json.loads((tmp_path / CHECKSUMS).read_text())
    built = builder("MobileNetV3Small")(keras.Input((64, 64, 3)), resolve_weights(config))
    for a, b in zip(built.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the stored weights, loaded
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(KitError, match="corrupt or changed") as info:
        resolve_weights(config)
    assert str(path) in str(info.value) and "make weights BACKBONE=MobileNetV3Small" in str(
        info.value
    )
    path.unlink()
    with pytest.raises(KitError, match="listed in .* but missing"):
        resolve_weights(config)


def test_without_a_local_file_imagenet_falls_to_keras_and_an_unlisted_file_is_refused(tmp_path):
    config = ModelConfig(backbone="efficientnet_b0", weights="imagenet", weights_dir=str(tmp_path))
    assert resolve_weights(config) == "imagenet"  # Keras' own download (online machines)
    (tmp_path / "EfficientNetB0_notop.weights.h5").write_bytes(b"not weights")
    with pytest.raises(KitError, match="not listed"):
        resolve_weights(config)
