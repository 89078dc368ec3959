"""`make bench`: the input pipeline against its peers, in one run, on the
same synthetic images, as ratios (machines are shared and noisy: only ratios
measured side by side mean anything). Prints a table, writes bench.json.

The reference loaders are written here, as a competitor would write them:
the per-image DataGenerator of the common tutorials ("seeds") and an
idiomatic tf.data pipeline over the DICOM files.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from competition.config import Config
from competition.data.dicom import lenient_uids, read_header
from competition.fileio import write_text_atomic
from competition.workers import worker_count

FLIPS = (0.5, 0.0)  # P(horizontal), P(vertical): the host flips every config's RandomFlip makes
TARGETS = {  # ratio name -> minimum
    "cache_vs_seeds": 10.0,
    "cache_vs_tfdata": 3.0,
    "cache_flips_vs_ceiling": 0.5,
    "fit_pipeline_vs_memory[tiny_cnn]": 0.9,
    "fit_pipeline_vs_memory[efficientnet_b0]": 0.9,
    "fit_pipeline_vs_memory_2.5d[efficientnet_b0]": 0.9,
    "fit_augment_vs_none[efficientnet_b0]": 0.9,
    "predict_pipeline_vs_memory": 0.9,
    "cache_build_vs_pixel_array": 1.7,
    "rss_anon_growth_10x": None,  # must stay below 0.15
}


# --- the reference loaders ------------------------------------------------


def seeds_decode(path: str, windows, size: int) -> np.ndarray:
    """What the tutorials do per image: full read, pixel_array, rescale,
    window each channel in float, resize."""
    import pydicom

    with lenient_uids():
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    channels = [
        np.clip((hu - (c - w / 2)) / w * 255.0, 0, 255).astype(np.uint8) for c, w in windows
    ]
    return cv2.resize(np.stack(channels, axis=-1), (size, size))


class SeedsGenerator:
    """The seeds' generator: reads, windows and resizes each DICOM in
    __getitem__, one worker."""

    def __init__(self, paths: list[str], windows, size: int, batch_size: int):
        self.paths, self.windows, self.size, self.batch_size = paths, windows, size, batch_size

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def __getitem__(self, index: int) -> np.ndarray:
        chunk = self.paths[index * self.batch_size : (index + 1) * self.batch_size]
        return np.stack([seeds_decode(p, self.windows, self.size) for p in chunk]).astype(
            np.float32
        )


def tfdata_over_dicom(paths: list[str], windows, size: int, batch_size: int):
    import tensorflow as tf

    def decode(path):
        return seeds_decode(path.decode(), windows, size).astype(np.float32)

    def load(path):
        image = tf.numpy_function(decode, [path], tf.float32)
        image.set_shape((size, size, len(windows)))
        return image

    return (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


# --- timing ---------------------------------------------------------------


def images_per_second(batches, count: int) -> float:
    started = time.perf_counter()
    seen = sum(len(b[0] if isinstance(b, tuple) else b) for b in batches)
    assert seen == count, f"{seen} images for {count}"
    return count / (time.perf_counter() - started)


def best_rate(make_batches, count: int, repeats: int = 3) -> float:
    """The best of a few passes: on a shared machine the least disturbed
    pass is the loader's own speed (every loader is measured the same way)."""
    return max(images_per_second(make_batches(), count) for _ in range(repeats))


def generator_batches(gen, workers: int):
    """Every batch of a PyDataset, loaded by `workers` threads as Keras does."""
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(gen.__getitem__, range(len(gen)))


def memory_batches(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size].astype(np.float32)


def warm_files(paths: list[str]) -> None:
    """Read every file once, so no loader pays the first disk read."""
    for path in paths:
        Path(path).read_bytes()


# --- the sections ---------------------------------------------------------


def loaders(config: Config, ids: list[str], cached, dicom, images: np.ndarray, stacks) -> dict:
    from competition.data.generator import DataGenerator

    batch, workers = config.train.batch_size, config.train.workers
    windows, size = config.preprocess.windows, config.preprocess.image_size
    paths = [str(dicom.paths(i)) for i in ids]
    warm_files(paths)
    n = len(ids)
    seeds = SeedsGenerator(paths, windows, size, batch)

    def kit(source):
        gen = DataGenerator(ids, source, batch_size=batch, flips=FLIPS, workers=workers)
        return best_rate(lambda: generator_batches(gen, gen.workers), n)

    return {
        "seeds_generator": best_rate(lambda: generator_batches(seeds, workers=1), n),
        "tfdata_over_dicom": best_rate(
            lambda: tfdata_over_dicom(paths, windows, size, batch).as_numpy_iterator(), n
        ),
        "kit_dicom_flips": kit(dicom),
        # Alternating, as they are compared: a disturbance hits both alike.
        **cache_and_ceiling(config, ids, cached, images, stacks),
    }


def cache_and_ceiling(config: Config, ids, cached, images, stacks) -> dict:
    from competition.data.generator import DataGenerator

    def flips(source):
        return DataGenerator(
            ids,
            source,
            batch_size=config.train.batch_size,
            flips=FLIPS,
            workers=config.train.workers,
        )

    gen, stacked = flips(cached), flips(stacks)
    n = len(ids)
    seconds = fastest(
        {
            "kit_cache_flips": lambda: timed(
                lambda: images_per_second(generator_batches(gen, gen.workers), n)
            ),
            "kit_cache_2.5d_flips": lambda: timed(
                lambda: images_per_second(generator_batches(stacked, stacked.workers), n)
            ),
            "in_memory_ceiling": lambda: timed(
                lambda: images_per_second(memory_batches(images, gen.batch_size), n)
            ),
        },
        rounds=5,
    )
    return {name: n / s for name, s in seconds.items()}


def _epoch_seconds(model, data, **kwargs) -> float:
    """Seconds of one epoch of `fit` (without its set-up)."""
    import keras

    times = []
    clock = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda e, logs: times.append(time.perf_counter()),
    )
    model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[clock], **kwargs)
    return times[1] - times[0]


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def fastest(runs: dict, rounds: int = 3) -> dict:
    """The fastest of a few runs of each (each returns its seconds), runs
    alternating so that a disturbance on the shared machine hits all alike,
    after one untimed warm-up each (tracing, first reads)."""
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    return best


def fit_rates(model, gen, x, labels, others: dict | None = None) -> dict:
    """fit steps/s fed by the generator vs by the same images in memory, and
    of `others` (name -> (model, generator)), alternating with them."""
    runs = {
        "pipeline": lambda: _epoch_seconds(model, gen),
        "memory": lambda: _epoch_seconds(model, x, y=labels, batch_size=gen.batch_size),
    }
    for name, (other, feed) in (others or {}).items():
        runs[name] = lambda other=other, feed=feed: _epoch_seconds(other, feed)
    return {name: len(gen) / s for name, s in fastest(runs).items()}


def augmented_runs(config: Config, network, ids, source, labels) -> dict:
    """(model, generator) pairs: the config's whole augmentation (host flips,
    mixing, and the image layers in the graph or on the host), and flips
    alone in the graph vs on the host (the evidence for where each runs)."""
    import keras

    from competition.augmentation import placement
    from competition.data.generator import DataGenerator
    from competition.training.augment import TrainingModel, host_augmenter, training_model
    from competition.training.losses import compile_args

    def generator(flips, host=None):
        return DataGenerator(
            ids,
            source,
            labels,
            batch_size=config.train.batch_size,
            flips=flips,
            augment_batch=host,
            workers=config.train.workers,
        )

    def compiled(model):
        model.compile("adam", compile_args(config.task)["loss"], jit_compile=False)
        return model

    graph_flip = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=0)])
    flips = placement(config.augment).host_flips
    return {
        "augmented_graph": (
            compiled(training_model(network, config.augment, config.seed)),
            generator(flips),
        ),
        "augmented_host": (
            compiled(training_model(network, config.augment, config.seed, image_layers=False)),
            generator(flips, host_augmenter(config.augment, config.seed)),
        ),
        "flips_host": (compiled(network), generator(FLIPS)),
        "flips_graph": (compiled(TrainingModel(network, graph_flip, [])), generator(None)),
    }


def predict_rates(model, gen, x) -> dict:
    """predict images/s from the generator vs from the same images in memory."""
    seconds = fastest(
        {
            "pipeline": lambda: timed(lambda: model.predict(gen, verbose=0)),
            "memory": lambda: timed(lambda: model.predict(x, batch_size=gen.batch_size, verbose=0)),
        },
    )
    return {feed: len(x) / s for feed, s in seconds.items()}


def fit_and_predict(config: Config, ids, cached, images, backbones, label: str = "") -> dict:
    import keras

    from competition.data.generator import DataGenerator
    from competition.training.losses import compile_args
    from competition.training.model import build_model

    batch, workers = config.train.batch_size, config.train.workers
    outputs = len(config.task.outputs)
    labels = np.random.default_rng(0).integers(0, 2, (len(ids), outputs)).astype(np.float32)
    x = images.astype(np.float32)
    result = {}
    for backbone in backbones:
        keras.utils.set_random_seed(0)
        cfg = replace(config.model, backbone=backbone, weights=None)
        model = build_model(cfg, images.shape[1:], config.task)
        model.compile("adam", compile_args(config.task)["loss"], jit_compile=False)
        gen = DataGenerator(ids, cached, labels, batch_size=batch, workers=workers)
        others = None if label else augmented_runs(config, model, ids, cached, labels)
        for feed, rate in fit_rates(model, gen, x, labels, others).items():
            result[f"fit_{feed}_steps_per_s{label}[{backbone}]"] = rate
        if backbone == backbones[0] and not label:
            gen = DataGenerator(ids, cached, batch_size=batch, workers=workers)
            for feed, rate in predict_rates(model, gen, x).items():
                result[f"predict_{feed}_images_per_s"] = rate
        keras.backend.clear_session()
    return result


def _each(read, files: list[str]) -> None:
    for path in files:  # nothing kept: each result is dropped at once
        read(path)


def _pixel_array_seconds(files: list[str]) -> float:
    import pydicom

    with lenient_uids():
        return timed(lambda: _each(lambda path: pydicom.dcmread(path).pixel_array, files))


def _header_seconds(files: list[str]) -> float:
    return timed(lambda: _each(read_header, files))


def _fresh_build_seconds(config: Config, workers: int) -> float:
    """Wall time of a whole cache build of the train split, from scratch."""
    from competition.data.cache import build_split

    with tempfile.TemporaryDirectory() as scratch:
        fresh = replace(config, data=replace(config.data, cache_dir=scratch))
        return timed(lambda: build_split(fresh, "train", workers))


def decode_rates(config: Config, files: list[str], workers: int) -> dict:
    """Header index vs pixel decode vs a fresh cache build, on the same files,
    alternating, the fastest of each (as for the loaders)."""
    warm_files(files)
    seconds = fastest(
        {
            "pixel_array": lambda: _pixel_array_seconds(files),
            "header": lambda: _header_seconds(files),
            "build": lambda: _fresh_build_seconds(config, workers),
        }
    )
    n = len(files)
    return {
        "pixel_array_files_per_s_1proc": n / seconds["pixel_array"],
        "header_files_per_s_1proc": n / seconds["header"],
        "cache_build_images_per_s": n / seconds["build"],
        "cache_build_workers": workers,
    }


MEMORY_RUN = r"""
import json, sys
import numpy as np, keras
from competition.config import load_config
from competition.data.cache import CacheSource
from competition.data.generator import DataGenerator
from competition.data.sources import image_source
from competition.devtools.memory import rss_anon_bytes
from competition.training.losses import compile_args
from competition.training.model import build_model

folder, config_path, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
epochs = int(sys.argv[4])
config = load_config(config_path, overrides)
source = CacheSource(folder, image_source(config, "train"), fallback=False)
ids = source.index.tolist()
outputs = len(config.task.outputs)
labels = np.random.default_rng(0).integers(0, 2, (len(ids), outputs)).astype(np.float32)
gen = DataGenerator(ids, source, labels, batch_size=config.train.batch_size, shuffle=True,
                    workers=config.train.workers)
model = build_model(config.model, source.shape, config.task)
model.compile("adam", compile_args(config.task)["loss"])
peak = [rss_anon_bytes()]
watch = keras.callbacks.LambdaCallback(on_batch_end=lambda b, logs: peak.append(rss_anon_bytes()))
model.fit(gen, epochs=epochs, verbose=0, callbacks=[watch])
print(json.dumps({"images": len(ids), "epochs": epochs, "peak_rss_anon": max(peak)}))
"""


def tiled_cache(folder: Path, out: Path, copies: int) -> Path:
    """A finished cache holding `copies` copies of `folder`'s rows (new IDs)."""
    import pandas as pd

    from competition.data.cache import DONE

    images = np.load(folder / "images.npy", mmap_mode="r")
    ids = pd.read_csv(folder / "ids.csv", dtype=str)["image_id"].tolist()
    out.mkdir(parents=True)
    big = np.lib.format.open_memmap(
        out / "images.npy", "w+", np.uint8, (len(ids) * copies, *images.shape[1:])
    )
    for k in range(copies):
        big[k * len(ids) : (k + 1) * len(ids)] = images
    big.flush()
    pd.DataFrame({"image_id": [f"{i}x{k}" for k in range(copies) for i in ids]}).to_csv(
        out / "ids.csv", index=False
    )
    np.save(out / "state.npy", np.full(len(ids) * copies, DONE, np.uint8))
    np.save(out / "crc.npy", np.tile(np.load(folder / "crc.npy"), copies))
    shutil.copyfile(folder / "source.json", out / "source.json")  # the store it describes
    return out


def memory_growth(config_path: str | None, overrides: list[str], folder: Path) -> dict:
    """Peak RssAnon of training over the cache, 1x and 10x the images, for
    the same number of steps (the 1x run takes 10 epochs, the 10x run one):
    TensorFlow's heap warms up over the first few hundred steps whatever the
    data, so only equal steps isolate what the dataset's size costs."""
    with tempfile.TemporaryDirectory() as scratch:
        result = {}
        for copies in (1, 10):
            data = folder if copies == 1 else tiled_cache(folder, Path(scratch) / "x10", copies)
            epochs = 10 // copies
            args = [str(data), config_path or "configs/default.yaml", json.dumps(overrides)]
            args.append(str(epochs))
            run = subprocess.run(
                [sys.executable, "-c", MEMORY_RUN, *args],
                capture_output=True,
                text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
            if run.returncode:
                raise RuntimeError(f"the memory run failed:\n{run.stderr[-3000:]}")
            result[f"x{copies}"] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def reader_rate(config: Config, count: int = 300) -> dict:
    """Files -> model input with the config's reader, one process, the
    fastest of a few passes over the first `count` readable training files."""
    from competition.data.index import read_index
    from competition.data.prepare import ensure_index
    from competition.data.preprocess import PixelSpec, load_input

    layout = ensure_index(config)
    index = read_index(layout)
    rows = index[(index["split"] == "train") & index["readable"]].head(count)
    paths = [layout.root / path for path in rows["path"]]
    warm_files([str(p) for p in paths])
    spec = PixelSpec.from_config(config)
    seconds = fastest({"read": lambda: timed(lambda: _each(lambda p: load_input(p, spec), paths))})
    return {
        "format": spec.image_format,
        "mode": spec.mode,
        "images": len(paths),
        "file_size": f"{int(rows['rows'].median())} x {int(rows['cols'].median())} (median)",
        "input_shape": list(spec.input_shape),
        "images_per_s_1proc": round(len(paths) / seconds["read"], 1),
    }


# --- the run --------------------------------------------------------------


def machine() -> dict:
    import tensorflow as tf

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def ratios(r: dict) -> dict:
    loaders_ = r["loaders"]
    fit = r["fit_predict"]
    out = {
        "cache_vs_seeds": loaders_["kit_cache_flips"] / loaders_["seeds_generator"],
        "cache_vs_tfdata": loaders_["kit_cache_flips"] / loaders_["tfdata_over_dicom"],
        "cache_flips_vs_ceiling": loaders_["kit_cache_flips"] / loaders_["in_memory_ceiling"],
        "predict_pipeline_vs_memory": fit["predict_pipeline_images_per_s"]
        / fit["predict_memory_images_per_s"],
        "cache_build_vs_pixel_array": r["decode"]["cache_build_images_per_s"]
        / r["decode"]["pixel_array_files_per_s_1proc"],
        "header_vs_pixel_array": r["decode"]["header_files_per_s_1proc"]
        / r["decode"]["pixel_array_files_per_s_1proc"],
        "rss_anon_growth_10x": r["memory"]["x10"]["peak_rss_anon"]
        / r["memory"]["x1"]["peak_rss_anon"]
        - 1,
    }
    out["cache_2.5d_vs_2d_flips"] = loaders_["kit_cache_2.5d_flips"] / loaders_["kit_cache_flips"]
    for key in fit:
        if key.startswith("fit_pipeline_steps_per_s"):
            variant = key.removeprefix("fit_pipeline_steps_per_s")  # [backbone] or _2.5d[backbone]
            out[f"fit_pipeline_vs_memory{variant}"] = (
                fit[key] / fit[f"fit_memory_steps_per_s{variant}"]
            )
        if key.startswith("fit_augmented_graph_steps_per_s"):
            variant = key.removeprefix("fit_augmented_graph_steps_per_s")
            plain = fit[f"fit_pipeline_steps_per_s{variant}"]
            for where in ("graph", "host"):
                rate = fit[f"fit_augmented_{where}_steps_per_s{variant}"]
                out[f"fit_augment_{where}_vs_none{variant}"] = rate / plain
            # what the kit does here: train.augment_on auto's choice on this machine
            chosen = out[f"fit_augment_{r['augment_on']}_vs_none{variant}"]
            out[f"fit_augment_vs_none{variant}"] = chosen
            out[f"fit_flips_graph_vs_host{variant}"] = (
                fit[f"fit_flips_graph_steps_per_s{variant}"]
                / fit[f"fit_flips_host_steps_per_s{variant}"]
            )
    return out


def _verdict(name: str, value: float) -> str:
    if name == "rss_anon_growth_10x":
        return "ok (< 0.15)" if value < 0.15 else "MISSED (< 0.15)"
    target = TARGETS.get(name)
    if target is None:
        return ""
    return f"ok (>= {target})" if value >= target else f"MISSED (>= {target})"


def table(report: dict) -> str:
    lines = ["| measurement | value |", "|---|---:|"]
    for section in ("loaders", "fit_predict", "decode"):
        for name, value in report[section].items():
            lines.append(f"| {name} | {value:,.1f} |")
    for copies, run in report["memory"].items():
        lines.append(
            f"| peak RssAnon, {run['images']} images x {run.get('epochs', 1)} epochs ({copies}) | "
            f"{run['peak_rss_anon'] / 2**20:,.0f} MiB |"
        )
    lines += ["", "| ratio | value | target |", "|---|---:|---|"]
    for name, value in report["ratios"].items():
        shown = f"{value:.3f}" if value < 1 else f"{value:.2f}"  # 0.148 is not 0.15
        lines.append(f"| {name} | {shown} | {_verdict(name, value)} |")
    return "\n".join(lines)


def run(
    config: Config, config_path: str | None, overrides: list[str], quick: bool, out: Path
) -> dict:
    from competition.data.cache import CacheSource, build_split, split_dir
    from competition.data.index import read_index
    from competition.data.neighbors import NeighborSource, positions_by_series
    from competition.data.prepare import ensure_index
    from competition.data.sources import image_source
    from competition.training.augment import image_layers_on

    layout = ensure_index(config)
    workers = config.data.workers
    # The peers are measured against the memory-mapped cache (bench-scale has the codecs).
    config = replace(config, data=replace(config.data, cache_codec="raw"))
    build_split(config, "train", workers)
    dicom = image_source(config, "train")
    cached = CacheSource(split_dir(config, "train"), dicom, fallback=False)
    index = read_index(layout)
    readable = index[(index["split"] == "train") & index["readable"]]
    ids = readable["image_id"].tolist()[: 128 if quick else 2000]
    images = cached.gather(np.asarray(ids))
    # 2.5D: each slice with its neighbours, three windows each (9 channels)
    stacks = NeighborSource(cached, positions_by_series(index, "train"), 1)
    fitted = 320 if quick else 640  # images fit and predict run over
    stacked_images = stacks.take(stacks.locate(ids[:fitted]))
    files = [str(layout.root / p) for p in readable["path"]]  # what the build reads
    backbones = ["tiny_cnn"] if quick else ["tiny_cnn", "efficientnet_b0"]
    print(f"bench: {len(ids)} images at {images.shape[1:]}; this takes a few minutes", flush=True)
    report = {
        "machine": machine(),
        "images": len(ids),
        "input_shape": list(images.shape[1:]),
        "batch_size": config.train.batch_size,
        "workers": config.train.workers,
        "augment_on": image_layers_on("auto"),
        # First, before TensorFlow is loaded here: `make cache` runs without
        # it, and forking workers from a process holding it costs ~15%.
        "decode": decode_rates(config, files, worker_count(workers)),
        "loaders": loaders(config, ids, cached, dicom, images, stacks),
        "fit_predict": {
            **fit_and_predict(config, ids[:fitted], cached, images[:fitted], backbones),
            **fit_and_predict(config, ids[:fitted], stacks, stacked_images, backbones, "_2.5d"),
        },
        "memory": memory_growth(config_path, overrides, split_dir(config, "train")),
    }
    report["ratios"] = ratios(report)
    write_text_atomic(out, json.dumps(report, indent=2))
    return report
