"""One backend's measurements, in the process `python -m
competition.devtools.accelerator` runs (KERAS_BACKEND set, the other
frameworks kept out): for each setup, the kit's fit and predict against the
same model fed one in-memory batch, the first step's compile time, and the
host pipeline's images per core."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from competition.augment.layers import host_augmenter, image_layers_on
from competition.config import Config, load_config
from competition.data.index import read_index
from competition.data.sources import open_source
from competition.devtools.bench.timing import epoch_seconds, fastest, timed
from competition.fileio import write_text_atomic
from competition.pipeline.generators import (
    generator,
    host_augmentation,
    host_flips,
    inference_generator,
)
from competition.pipeline.train import compiled_model
from competition.training import devices
from competition.training.model import load_checkpoint


class RepeatedBatch(keras.utils.PyDataset):
    """One in-memory uint8 batch, `steps` times: what the device does when
    the input costs nothing."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, steps: int):
        super().__init__()
        self.x, self.y, self.steps = x, y, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index):
        return self.x if self.y is None else (self.x, self.y)


def first_steps(model, feed) -> tuple[float, float]:
    """(seconds from the start of a model's first fit to the end of its first
    step, its fastest later step): their difference is the compile."""
    marks = []

    def mark(*_, logs=None):
        if logs and "loss" in logs:
            float(logs["loss"])  # the step's result, not its dispatch (JAX runs ahead)
        marks.append(time.perf_counter())

    clock = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: mark(), on_train_batch_end=lambda b, logs: mark(logs=logs)
    )
    model.fit(feed, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    steps = np.diff(marks)
    return float(steps[0]), float(steps[1:].min())


def fit_rates(config: Config, ids, source, labels, steps: int, rounds: int) -> dict:
    """The kit's fit (its generator, its compiled model, the augmentation
    where train.augment_on puts it here) against the same model fed one
    in-memory uint8 batch; the first step's compile."""
    batch = config.train.batch_size
    train = generator(
        config, ids, source, labels, shuffle=True, flips=host_flips(config),
        host=host_augmentation(config, 0), steps_per_epoch=steps,
    )  # fmt: skip
    model = compiled_model(config, train)
    memory = RepeatedBatch(source.gather(np.asarray(ids[:batch])), labels[:batch], steps)
    first, later = first_steps(model, RepeatedBatch(memory.x, memory.y, 4))
    feeds = {"kit": train, "memory": memory}
    seconds = fastest({k: lambda f=f: epoch_seconds(model, f) for k, f in feeds.items()}, rounds)
    return {
        "fit_kit_images_per_s": steps * batch / seconds["kit"],
        "fit_memory_images_per_s": steps * batch / seconds["memory"],
        "fit_first_step_s": first,
        "fit_compile_s": max(0.0, first - later),  # PyTorch compiles nothing: noise around 0
        "model": model,
    }


def predict_rates(config: Config, network, ids, source, rounds: int) -> dict:
    """The kit's prediction (the checkpoint as it loads it, its inference
    generator) against the same model fed one in-memory batch; the first call."""
    with tempfile.TemporaryDirectory() as folder:
        network.save(Path(folder) / "best.keras")
        model = load_checkpoint(Path(folder) / "best.keras", config.model.safe_mode)
    kit = inference_generator(config, ids, source)
    batch = config.predict.batch_size
    memory = RepeatedBatch(source.gather(np.asarray(ids[:batch])), None, len(kit))
    first = timed(lambda: model.predict(RepeatedBatch(memory.x, None, 1), verbose=0))
    seconds = fastest(
        {
            "kit": lambda: timed(lambda: model.predict(kit, verbose=0)),
            "memory": lambda: timed(lambda: model.predict(memory, verbose=0)),
        },
        rounds,
    )
    return {
        "predict_kit_images_per_s": len(ids) / seconds["kit"],
        "predict_memory_images_per_s": len(memory) * batch / seconds["memory"],
        "predict_first_call_s": first,
    }


def host_rates(config: Config, ids, source, labels, steps: int) -> dict:
    """Images per CPU-second (one core's work) of the loader on the host: the
    cache read and flips (what it does when the image layers run on the
    device), and with the image layers too (what it does on a CPU machine)."""
    rates = {}
    for name, host in (("load", None), ("load_augment", host_augmenter(config.augment, 0))):
        gen = generator(
            config, ids, source, labels, shuffle=True, flips=host_flips(config), host=host,
            steps_per_epoch=steps + 1,
        )  # fmt: skip
        gen[0]  # traced and warm
        cpu, wall = time.process_time(), time.perf_counter()
        images = sum(len(gen[i][0]) for i in range(1, len(gen)))
        rates[f"host_{name}_images_per_core_s"] = images / (time.process_time() - cpu)
        rates[f"host_{name}_images_per_s"] = images / (time.perf_counter() - wall)
    return rates


def measure_setup(config: Config, images: int, steps: int, rounds: int) -> dict:
    keras.utils.set_random_seed(config.seed)
    index = read_index(config.layout)
    train = index[(index["split"] == "train") & index["readable"]]
    ids = train["image_id"].tolist()[:images]
    source = open_source(config.inputs, "train")
    outputs = len(config.task.outputs)
    labels = np.random.default_rng(0).integers(0, 2, (len(ids), outputs)).astype(np.float32)
    fit = fit_rates(config, ids, source, labels, steps, rounds)
    network = fit.pop("model").network
    result = {
        "input_shape": list(source.shape),
        "batch_size": config.train.batch_size,
        "precision": keras.mixed_precision.global_policy().name,
        "jit_compile": devices.jit_compile(config.train.jit_compile),
        "augment_on": image_layers_on(config.train.augment_on, config.train.use_multiprocessing),
        "augment": [next(iter(step)) for step in config.augment],
        **fit,
        **predict_rates(config, network, ids[: steps * config.predict.batch_size], source, rounds),
        **host_rates(config, ids, source, labels, min(steps, 8)),
    }
    keras.backend.clear_session()
    return result


def main(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    report = {
        "keras": devices.describe(),
        "accelerator": devices.accelerator_name(),
        "setups": {},
    }
    print(f"bench-gpu: {report['keras']}", flush=True)
    for setup in spec["setups"]:
        config = load_config(setup["config"], setup["overrides"])
        print(f"bench-gpu: {setup['name']}", flush=True)
        report["setups"][setup["name"]] = measure_setup(
            config, spec["images"], spec["steps"], spec["rounds"]
        )
    write_text_atomic(Path(out_path), json.dumps(report, indent=2))
    return 0
