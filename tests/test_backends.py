"""The kit on every Keras backend. The rest of the suite runs on TensorFlow
(the default); here the commands run on JAX (installed with the kit) and on
PyTorch (its CPU wheel is on these machines' disk: 192 MB, installed once
per session into a sibling environment; PyPI's default build would bring
CUDA, so the tests that need it are skipped where the wheel is not there).
Each command runs in its own process, which reports the frameworks it
loaded: its own backend's alone (on JAX or PyTorch, never TensorFlow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.inference.submission import validate_file
from competition.pipeline.predict import predict_and_submit

from conftest import TRAINED_WITH, small_config
from helpers import REPO, last_json, run_checked, sibling_python

# Every kind of augmentation step: host flips, image layers, both label mixers.
AUGMENT = (
    "augment=[{RandomFlip: {mode: horizontal}}, {RandomRotation: {factor: 0.05}}, "
    "{RandomBrightness: {factor: 0.1}}, {MixUp: {alpha: 0.2}}, {CutMix: {}}]"
)
# A command of the kit, then the frameworks its process loaded.
KIT = r"""
import json, sys
from competition.cli import main
code = main(sys.argv[1:])
loaded = sorted({"tensorflow", "jax", "torch"} & set(sys.modules))
print(json.dumps({"code": code, "loaded": loaded}))
"""


def kit(backend: str, *args: str, python=sys.executable, timeout=600) -> dict:
    result = run_checked(
        [str(python), "-c", KIT, *args], timeout, KERAS_BACKEND=backend, PYTHONPATH=str(REPO)
    )
    report = last_json(result)
    assert report["code"] == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {**report, "stdout": result.stdout}


def settings(root, runs, *extra: str) -> list[str]:
    overrides = [
        f"data.root={root}",
        f"runs_dir={runs}",
        f"predict.submissions_dir={runs}/submissions",
        "train.epochs=1",
        *extra,
    ]
    return ["--config", "configs/small.yaml", *(a for o in overrides for a in ("--set", o))]


@pytest.fixture(scope="module")
def jax_fold(small_competition, tmp_path_factory):
    """Fold 0 of the small preset trained on JAX with every kind of augmentation."""
    runs = tmp_path_factory.mktemp("jax") / "runs"
    args = settings(small_competition.data.root, runs, AUGMENT)
    return runs, args, kit("jax", "train", *args)


@pytest.mark.slow
def test_jax_trains_with_every_augmentation_and_never_loads_tensorflow(jax_fold):
    runs, _, report = jax_fold
    assert report["loaded"] == ["jax"]
    assert "Running on Keras 3.13.2 on jax 0.7.2" in report["stdout"]
    metrics = json.loads((runs / "small" / "fold0" / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and np.isfinite(metrics["score"])
    history = pd.read_csv(runs / "small" / "fold0" / "history.csv")
    assert np.isfinite(history["loss"]).all() and history["epoch"].tolist() == [0]
    assert_tensorboard_scalars(runs / "small" / "fold0" / "tensorboard", history)


def assert_tensorboard_scalars(folder: Path, history: pd.DataFrame) -> None:
    """TensorBoard event files hold each epoch's loss, train and validation."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for split, column in (("train", "loss"), ("validation", "val_loss")):
        events = EventAccumulator(str(folder / split))
        events.Reload()
        logged = [e.value for e in events.Scalars("epoch_loss")]
        np.testing.assert_allclose(logged, history[column], rtol=1e-5)


@pytest.mark.slow
def test_jax_runs_the_sequence_stage_predicts_and_validates(jax_fold):
    runs, args, _ = jax_fold
    sequence = kit("jax", "train-seq", *args, "--set", "sequence.epochs=1")
    predicted = kit("jax", "predict", *args)
    checked = kit("jax", "validate", f"{runs}/submissions/submission.csv", *args)
    for report in (sequence, predicted, checked):
        assert report["loaded"] in (["jax"], [])  # validate loads no backend at all
    assert "sequence stage weighted_log_loss" in sequence["stdout"]
    assert ", stage 2:" in predicted["stdout"] and "ok: " in checked["stdout"]


def copy_fold(source: Path, runs: Path) -> None:
    """A trained run without its predictions, to predict anew."""
    shutil.copytree(source / "small", runs / "small", ignore=shutil.ignore_patterns("test*"))


def predictions(runs: Path) -> pd.DataFrame:
    return pd.read_csv(runs / "small" / "test_preds.csv", index_col="image_id")


@pytest.mark.slow
def test_a_fold_trained_on_one_backend_predicts_the_same_on_another(
    small_competition, trained, jax_fold, tmp_path
):
    root = small_competition.data.root
    for backend, source in (("tensorflow", trained), ("jax", jax_fold[0])):
        here, there = tmp_path / f"{backend}-here", tmp_path / f"{backend}-there"
        for runs in (here, there):
            copy_fold(source, runs)
        extra = (*TRAINED_WITH,) if backend == "tensorflow" else (AUGMENT,)
        other = "jax" if backend == "tensorflow" else "tensorflow"
        for runs_on, runs in ((backend, here), (other, there)):
            report = kit(runs_on, "predict", *settings(root, runs, *extra, "predict.stage=1"))
            assert report["loaded"] == [runs_on]  # one framework per process
        difference = (predictions(here) - predictions(there)).abs().to_numpy().max()
        assert difference < 1e-4, (backend, difference)


DATA_PARALLEL = r"""
import json, os
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from competition.data.generator import DataGenerator
from competition.training import devices
from helpers import IndexSource

n, epochs, seen = 37, 3, []
labels = np.repeat(np.arange(n, dtype=np.float32)[:, None] % 2, 6, axis=1)
def generator(seen):
    return DataGenerator([f"ID_{i}" for i in range(n)], IndexSource(seen=seen), labels,
                         batch_size=8, shuffle=True, seed=1)
spread = devices.spread("mirrored")
with spread.scope():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(6, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    train, _ = spread.feed(generator(seen), generator([]), 1)
    mark = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(-1))
    history = model.fit(train, epochs=epochs, verbose=0, callbacks=[mark])
print(json.dumps({"replicas": spread.replicas, "kind": type(spread).__name__, "seen": seen,
                  "loss": history.history["loss"]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_data_parallel_on_two_devices_sees_each_sample_once_per_epoch(backend):
    """TensorFlow's MirroredStrategy (through tf.data) and JAX's DataParallel
    (batches of 8, the last of 5 padded to 6 with a weight-0 repeat)."""
    result = run_checked(
        [sys.executable, "-c", DATA_PARALLEL],
        300,
        KERAS_BACKEND=backend,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        PYTHONPATH=str(REPO / "tests"),
    )
    report = last_json(result)
    assert report["replicas"] == 2
    assert report["kind"] == {"tensorflow": "Mirrored", "jax": "DataParallel"}[backend]
    n, text = 37, ",".join(map(str, report["seen"]))
    # Loads between epoch-begin markers (-1); what Keras reads before the
    # first one (a look at the first batches) is not an epoch.
    epochs = [[int(v) for v in part.strip(",").split(",")] for part in text.split("-1")[1:]]
    assert len(epochs) == 3
    for samples in epochs:
        assert sorted(samples) == list(range(n))
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    assert all(np.isfinite(report["loss"]))  # both devices trained


def test_padding_splits_a_batch_evenly_and_counts_each_sample_once():
    from competition.data.generator import DataGenerator

    from helpers import IndexSource

    labels = np.ones((5, 1), np.float32)
    gen = DataGenerator([f"ID_{i}" for i in range(5)], IndexSource(), labels, batch_size=8)
    gen.pad_to = 4
    x, y, weights = gen[0]
    assert len(x) == len(y) == 8 and weights.tolist() == [1] * 5 + [0] * 3
    assert x[5:, 0, 0, 0].tolist() == [0, 1, 2]  # repeats of the batch's own images


@pytest.fixture(scope="session")
def torch_python(tmp_path_factory):
    """A sibling environment with PyTorch's CPU wheel from this machine's disk."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = sorted(Path("/opt/wheels").glob(f"torch-2.13.0+cpu-{tag}-{tag}-*.whl"))
    if not wheels:
        pytest.skip(f"no PyTorch CPU wheel for {tag} on this machine (/opt/wheels)")
    python = sibling_python(tmp_path_factory.mktemp("torch") / "venv", {"competition"})
    run_checked([str(python), "-m", "pip", "install", "-q", str(wheels[0])], 600)
    return python


@pytest.mark.slow
def test_torch_trains_predicts_and_loads_a_tensorflow_fold(
    small_competition, trained, torch_python, tmp_path
):
    root = small_competition.data.root
    args = settings(root, tmp_path / "runs", AUGMENT)
    trained_here = kit("torch", "train", *args, python=torch_python)
    predicted = kit("torch", "predict", *args, python=torch_python)
    errors = kit("torch", "errors", "--k", "1", *args, python=torch_python)
    assert trained_here["loaded"] == predicted["loaded"] == errors["loaded"] == ["torch"]
    fold = tmp_path / "runs" / "small" / "fold0"
    assert_tensorboard_scalars(fold / "tensorboard", pd.read_csv(fold / "history.csv"))
    assert (fold.parent / "errors" / "fold0_worst.png").stat().st_size > 10_000
    sample = small_competition.layout.sample_submission
    submission = tmp_path / "runs" / "submissions" / "submission.csv"
    assert validate_file(small_competition.task, submission, sample)[0] == []
    runs = tmp_path / "tf"
    copy_fold(trained, runs)
    kit("torch", "predict", *settings(root, runs, *TRAINED_WITH), python=torch_python)
    config = small_config(root, f"runs_dir={tmp_path / 'tf-here'}", *TRAINED_WITH)
    shutil.copytree(trained / "small", tmp_path / "tf-here" / "small")
    predict_and_submit(config)  # the same fold on TensorFlow, in this process
    difference = (predictions(runs) - predictions(tmp_path / "tf-here")).abs().to_numpy().max()
    assert difference < 1e-4


# Each preset's augmentation on the host (the public per-batch API) and in
# the graph (a training step of a tiny network), in one process per backend.
PRESET_AUGMENTATION = r"""
import json, sys
from competition.backend import isolate
isolate()
import numpy as np
from competition.augment.layers import host_augmenter, training_model
from competition.config import load_config
from competition.training.losses import compile_args
from competition.training.model import build_model
report = {}
for path in sys.argv[1:]:
    config = load_config(path, ["model.backbone=tiny_cnn", "model.weights=null"])
    shape = (32, 32, config.input_shape[2])
    x = np.random.default_rng(0).integers(0, 255, (4, *shape)).astype(np.uint8)
    host = host_augmenter(config.augment, 0)
    hosted = host(x, 7) if host else x.astype(np.float32)
    model = training_model(build_model(config.model, shape, config.task), config.augment, 0)
    model.compile("adam", **compile_args(config.task))
    y = np.zeros((4, len(config.task.outputs)), np.float32)
    loss = model.fit(x, y, epochs=1, batch_size=4, verbose=0).history["loss"][0]
    report[path] = {"layers": [next(iter(step)) for step in config.augment],
                    "host": [list(hosted.shape), bool(np.isfinite(hosted).all())],
                    "loss": float(loss)}
loaded = sorted({"tensorflow", "jax", "torch"} & set(sys.modules))
print(json.dumps({"loaded": loaded, "report": report}))
"""


def preset_augmentation(backend: str, python=sys.executable) -> None:
    paths = [str(p) for p in sorted((REPO / "configs").glob("*.yaml")) if p.name != "base.yaml"]
    result = run_checked(
        [str(python), "-c", PRESET_AUGMENTATION, *paths], 600, KERAS_BACKEND=backend,
        PYTHONPATH=str(REPO),
    )  # fmt: skip
    found = last_json(result)
    assert found["loaded"] == [backend]
    layers = set()
    for path in paths:
        measured = found["report"][path]
        assert measured["host"][0][1:3] == [32, 32] and measured["host"][1], path
        assert np.isfinite(measured["loss"]), path
        layers |= set(measured["layers"])
    assert {"RandomRotation", "RandomZoom", "RandomContrast"} <= layers  # the winners' list ran


@pytest.mark.slow
def test_every_presets_augmentation_runs_on_jax():
    preset_augmentation("jax")


@pytest.mark.slow
def test_every_presets_augmentation_runs_on_torch(torch_python):
    preset_augmentation("torch", torch_python)


def test_a_backend_that_is_not_there_is_a_config_error_naming_the_fix():
    missing = run_checked(
        [sys.executable, "-c", "import competition.backend as b; print(b.chosen())"],
        60,
        KERAS_BACKEND="mxnet",
    )
    assert missing.stdout.strip() == "mxnet"
    result = subprocess.run(
        [sys.executable, "-m", "competition", "show-config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "mxnet"},
    )
    assert result.returncode == 2 and "KERAS_BACKEND must be one of tensorflow, jax, torch" in (
        result.stderr
    )


def test_the_torch_backend_refuses_to_spread_a_fit(monkeypatch):
    from competition.errors import ConfigError

    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(ConfigError, match="Keras does not do on PyTorch"):
        small_config("unused", "train.strategy=mirrored")
