"""The augmentation as a list of Keras layers: checked at config load
(without TensorFlow), placed on the host (flips), in the graph (image
layers) and in the training step (MixUp, CutMix); labels mixed for every
head kind that fits; the saved model holds no augmentation; a seed
reproduces a batch; the preview is written."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

from competition.augment.layers import augmenter, mix, mixers, training_model
from competition.augment.spec import (
    KIT_ARGUMENTS,
    LAYERS,
    NOT_AUGMENTATION,
    REQUIRED,
    check_augment,
    placement,
)
from competition.config import ConfigError, load_config
from competition.training.callbacks import BestCheckpoint
from competition.training.model import load_checkpoint

from conftest import small_config
from helpers import REPO, cli

HEADS = {"h": "multilabel"}


def refused(augment, channels=3, heads=HEADS) -> str:
    with pytest.raises(ConfigError) as caught:
        check_augment(augment, channels, heads)
    return str(caught.value)


def test_the_table_matches_keras_signatures():
    for name, spec in LAYERS.items():
        params = inspect.signature(getattr(keras.layers, name).__init__).parameters
        for argument, default in spec.arguments.items():
            assert argument in params, f"{name}.{argument}"
            keras_default = params[argument].default
            if default is REQUIRED:
                assert keras_default is inspect.Parameter.empty, f"{name}.{argument}"
            else:
                assert keras_default == default, f"{name}.{argument}"
        offered = set(spec.arguments) | set(KIT_ARGUMENTS) | {"self", "kwargs"}
        assert set(params) <= offered, f"{name}: {set(params) - offered} not offered"
    for name in NOT_AUGMENTATION:
        assert hasattr(keras.layers, name), name


def test_config_errors_name_the_layer_argument_and_valid_ones():
    message = refused([{"RandomFlip": {}}, {"RandomRotate": {"factor": 0.1}}])
    assert "augment[1]" in message and "'RandomRotate'" in message
    assert "RandomRotation" in message  # the valid names
    message = refused([{"RandomRotation": {"factor": 0.1, "angle": 3}}])
    assert "augment[0].RandomRotation" in message and "'angle'" in message
    assert "factor, fill_mode, interpolation, fill_value" in message
    assert "needs factor" in refused([{"RandomRotation": {}}])
    assert "set by the kit" in refused([{"RandomBrightness": {"factor": 0.1, "seed": 3}}])
    assert "horizontal_and_vertical" in refused([{"RandomFlip": {"mode": "diagonal"}}])
    assert "number" in refused([{"RandomZoom": {"height_factor": "big"}}])
    assert "RandomZoom" in refused([{"RandomCrop": {"height": 8, "width": 8}}])
    assert "one mapping" in refused([{"RandomFlip": {}, "RandomZoom": {"height_factor": 0.1}}])
    message = refused([{"RandomHue": {"factor": 0.1}}], channels=9)
    assert "3 (RGB)" in message and "has 9" in message
    message = refused([{"CutMix": {}}], heads={"grade": "ordinal"})
    assert "ordinal head 'grade'" in message and "MixUp" in message
    check_augment([{"MixUp": {"alpha": 0.4}}], 1, {"grade": "ordinal"})  # fits: no error


def test_a_bad_list_stops_the_command_before_any_work(tmp_path):
    root = tmp_path / "nothing"
    result = cli(
        "train", "--config", "configs/small.yaml", "--set", f"data.root={root}",
        "--set", "augment=[{RandomFlip: {mode: sideways}}]", timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "augment[0].RandomFlip.mode" in result.stderr
    assert "Traceback" not in result.stderr and not root.exists()
    with pytest.raises(ConfigError, match="a list of Keras augmentation layers"):
        small_config(root, "augment.hflip=0.5")  # the old keys say what replaced them


def test_placement_puts_flips_on_the_host_and_mixing_in_the_step():
    where = placement(
        [
            {"RandomFlip": {"mode": "horizontal"}},
            {"RandomRotation": {"factor": 0.1}},
            {"MixUp": {}},
            {"RandomFlip": {"mode": "vertical"}},
        ]
    )
    assert where.host_flips == (0.5, 0.5)
    assert [s.name for s in where.in_graph] == ["RandomRotation"]
    assert [s.name for s in where.mixing] == ["MixUp"]


def coded_batch(n=4, size=64):
    """Image i is constant 10*i, so a mixed image's mean tells the weights."""
    return np.stack([np.full((size, size, 1), 10.0 * i, np.float32) for i in range(n)])


@pytest.mark.parametrize("kind", ["multilabel", "binary", "multiclass", "ordinal"])
def test_mixup_mixes_labels_as_it_mixes_images_for_every_head_kind(kind):
    check_augment([{"MixUp": {}}], 1, {"h": kind})
    x = coded_batch()
    y = {
        "multilabel": np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32),
        "binary": np.array([[1], [0], [1], [0]], np.float32),
        "multiclass": np.eye(4, dtype=np.float32),
        "ordinal": np.array([[0], [1], [2], [4]], np.float32),
    }[kind]
    (layer,) = mixers([{"MixUp": {"alpha": 0.4}}], seed=1)
    xm, ym = map(np.asarray, mix([layer], x, y))
    for row in range(4):
        share = xm[row].mean() / 10.0  # = lam * i + (1 - lam) * j
        partner = [j for j in range(4) if j != row]
        fits = [(j, (share - j) / (row - j)) for j in partner if 0 <= (share - j) / (row - j) <= 1]
        expected = [lam * y[row] + (1 - lam) * y[j] for j, lam in fits] or [y[row]]
        assert any(np.allclose(ym[row], e, atol=1e-4) for e in expected), (kind, row)
    if kind == "multiclass":
        np.testing.assert_allclose(ym.sum(axis=1), 1.0, atol=1e-5)
    assert ym.min() >= y.min() - 1e-6 and ym.max() <= y.max() + 1e-6


def test_cutmix_weights_labels_by_the_pasted_area():
    x, y = coded_batch(), np.eye(4, dtype=np.float32)
    (layer,) = mixers([{"CutMix": {}}], seed=2)
    xm, ym = map(np.asarray, mix([layer], x, y))
    for row in range(4):
        image_mean = xm[row].mean()
        label_mean = float((ym[row] * 10.0 * np.arange(4)).sum())
        assert abs(image_mean - label_mean) <= 0.3  # 3% of the area at 64 px
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, atol=1e-5)


def network(channels=3):
    inputs = keras.Input((32, 32, channels))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid")(x), name="net")


AUGMENT = [
    {"RandomFlip": {"mode": "horizontal"}},
    {"RandomRotation": {"factor": 0.05}},
    {"RandomBrightness": {"factor": 0.2}},
    {"MixUp": {}},
]


def test_the_saved_model_holds_no_augmentation_and_loads_in_safe_mode(tmp_path):
    model = training_model(network(), AUGMENT, seed=0)
    assert model is not model.network
    model.compile("adam", "binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (16, 32, 32, 3)).astype(np.uint8)
    y = rng.integers(0, 2, (16, 2)).astype(np.float32)
    best = BestCheckpoint(tmp_path / "best.keras", "loss")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[best])
    loaded = load_checkpoint(tmp_path / "best.keras", safe_mode=True)
    names = {type(layer).__name__ for layer in loaded._flatten_layers()}
    assert not names & set(LAYERS), names
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), 1e-5)
    net = network()
    flips_only = training_model(net, [{"RandomFlip": {}}], 0)  # host flips: nothing in the graph
    assert flips_only.network is net and flips_only.augmenter is None and not flips_only.mixers
    assert [id(w) for w in flips_only.weights] == [id(w) for w in net.weights]


def test_a_seed_reproduces_a_batch_and_another_seed_does_not():
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    one = np.asarray(augmenter(AUGMENT, seed=7)(x, training=True))
    two = np.asarray(augmenter(AUGMENT, seed=7)(x, training=True))
    other = np.asarray(augmenter(AUGMENT, seed=8)(x, training=True))
    np.testing.assert_array_equal(one, two)
    assert not np.allclose(one, other) and not np.allclose(one, x)
    np.testing.assert_array_equal(np.asarray(augmenter(AUGMENT, 7)(x, training=False)), x)


def test_every_preset_builds_its_augmentation():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if path.name == "base.yaml":
            continue
        config = load_config(path)
        layers = augmenter(config.augment, config.seed)
        if layers is not None:
            shape = (2, 32, 32, config.input_shape[2])
            assert layers(np.zeros(shape, np.float32), training=True).shape == shape, path.name


def test_the_preview_is_written(small_competition, tmp_path):
    import dataclasses

    import matplotlib.image

    from competition.devtools.preview import save_preview

    config = dataclasses.replace(
        small_competition,
        augment=[{"RandomFlip": {}}, {"RandomZoom": {"height_factor": 0.2}}, {"MixUp": {}}],
    )
    out = save_preview(config, tmp_path / "preview.png", count=2, images=3)
    picture = matplotlib.image.imread(out)
    assert picture.shape[0] > 200 and picture.shape[1] > 200 and picture.std() > 0.05
    assert list(tmp_path.iterdir()) == [out]  # nothing half-written beside it


def test_on_the_host_a_batch_key_reproduces_the_draws_whichever_thread():
    from concurrent.futures import ThreadPoolExecutor

    from competition.augment.layers import host_augmenter, image_layers_on
    from competition.data.generator import DataGenerator

    from helpers import IndexSource

    host = host_augmenter(AUGMENT, seed=3)
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype(np.uint8)
    first = host(x, 11)
    assert first.dtype == np.float32 and first.shape == x.shape
    np.testing.assert_array_equal(host_augmenter(AUGMENT, seed=3)(x, 11), first)
    assert not np.allclose(host(x, 12), first)
    with ThreadPoolExecutor(4) as pool:  # keys interleaved across threads
        again = list(pool.map(lambda key: host(x, key), [11, 12, 11, 12, 11]))
    for got in again[::2]:
        np.testing.assert_array_equal(got, first)
    ids = [f"ID_{i}" for i in range(8)]
    labels = np.zeros((8, 2), np.float32)
    gen = DataGenerator(ids, IndexSource(), labels, batch_size=4, augment_batch=host)
    assert gen.dtype == np.float32 and gen[0][0].dtype == np.float32
    np.testing.assert_array_equal(gen[1][0], gen[1][0])
    assert image_layers_on("graph") == "graph" and image_layers_on("host") == "host"


def test_host_placement_is_refused_with_worker_processes(tmp_path):
    from competition.augment.layers import image_layers_on

    with pytest.raises(ConfigError, match="forked worker processes"):
        small_config(tmp_path, "train.augment_on=host", "train.use_multiprocessing=true")
    assert image_layers_on("auto", worker_processes=True) == "graph"
