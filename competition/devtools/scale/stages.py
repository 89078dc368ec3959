"""The data stages bench-scale measures, each in a fresh process (`python -m
competition.devtools.scale STAGE ARGS`): its peak memory is what that
process holds itself (anonymous and shared memory, sampled every 50 ms; the
pages of a memory-mapped cache it reads are the kernel's page cache,
evictable, and reported apart as VmHWM), or its largest worker's, and its
growth is measured above what its imports hold."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

import numpy as np

from competition.devtools.memory import PeakSampler, own_bytes, status_bytes, workers_peak


def scale_config(root: str, *overrides: str, preset: str | None = None):
    """The default competition's config (or `preset`'s) at `root`, for a stage."""
    from competition.config import load_config

    return load_config(
        preset,
        [
            f"data.root={root}",
            "synth.generate=true",
            "preprocess.neighbors=0",
            f"runs_dir={root}/runs",
            f"predict.submissions_dir={root}/submissions",
            *overrides,
        ],
    )


def stage_labels(root: str, preset: str | None = None) -> dict:
    from competition.data.labels import read_labels

    config = scale_config(root, preset=preset)
    return {"images": len(read_labels(config.task, config.layout.train_csv))}


def stage_index(root: str, workers: int, preset: str | None = None) -> dict:
    from competition.data.index import write_index

    layout = scale_config(root, preset=preset).layout
    write_index(layout, workers)
    return {"bytes": layout.index_csv.stat().st_size}


def stage_folds(root: str, preset: str | None = None) -> dict:
    from competition.pipeline.prepare import write_folds_for

    config = scale_config(root, preset=preset)
    layout = config.layout
    write_folds_for(config, layout)
    return {"bytes": layout.folds_csv.stat().st_size}


def codec_config(root: str, codec: str, size: int, preset: str | None = None):
    return scale_config(
        root,
        f"data.cache_codec={codec}",
        f"data.cache_dir=cache-{codec}-{size}",
        f"preprocess.image_size={size}",
        "data.source=cache",
        preset=preset,
    )


def stage_cache(root: str, codec: str, size: int, workers: int, preset: str | None = None) -> dict:
    from competition.data.cache.build import build_split

    result = build_split(codec_config(root, codec, size, preset).cache, "train", workers)
    return {"bytes": result["bytes"], "images": result["images"]}


def stage_epoch(root: str, codec: str, size: int, workers: int, preset: str | None = None) -> dict:
    """One shuffled epoch of training batches from the cache, no model."""
    from competition.data.generator import DataGenerator
    from competition.data.sources import slice_source

    source = slice_source(codec_config(root, codec, size, preset).inputs, "train")
    ids = source.index.tolist()
    labels = np.zeros((len(ids), len(source.layout.task.outputs)), np.float32)
    gen = DataGenerator(ids, source, labels, batch_size=64, shuffle=True, workers=workers)
    started = time.perf_counter()
    for batch in range(len(gen)):
        gen[batch]
    return {"images": len(ids), "images_per_s": len(ids) / (time.perf_counter() - started)}


def stage_submission(root: str) -> dict:
    """Prediction's last step for the sample's images: test_preds.csv, then
    the post-processed, decoded, checked submission."""
    import pandas as pd

    from competition.inference import submission as sub
    from competition.pipeline.assemble import submit, test_images

    config = scale_config(root)
    sample = sub.read_sample(config.task, config.layout.sample_submission)
    image_ids, fields = test_images(config, sample)
    outputs = np.random.default_rng(0).random((len(image_ids), len(config.task.outputs)))
    table = pd.DataFrame(
        outputs.astype(np.float32),
        index=pd.Index(image_ids, name="image_id"),
        columns=config.task.outputs,
    )
    _, _, written = submit(config, [0], sample, table, fields)
    return {"images": len(image_ids), "rows": written["rows"]}


STAGES = {
    "labels": stage_labels,
    "index": stage_index,
    "folds": stage_folds,
    "cache": stage_cache,
    "epoch": stage_epoch,
    "submission": stage_submission,
}


IMPORTS = {  # loaded before the clock starts: TensorFlow alone takes seconds
    "labels": ["competition.data.labels"],
    "index": ["competition.data.index"],
    "folds": ["competition.pipeline.prepare", "competition.data.folds"],
    "cache": ["competition.data.cache.build"],
    "epoch": ["competition.data.generator", "competition.data.sources"],
    "submission": ["competition.pipeline.assemble"],
}


def child(stage: str, args: dict) -> None:
    import importlib

    for module in IMPORTS[stage]:
        importlib.import_module(module)
    start, sampler = own_bytes(), PeakSampler()
    sampler.start()
    started = time.perf_counter()
    found = STAGES[stage](**args)
    seconds = time.perf_counter() - started
    peak = max(sampler.stop(), workers_peak())
    measured = {
        "seconds": seconds,
        "rss_start": start,
        "peak": peak,
        "vm_hwm": status_bytes("VmHWM"),
    }
    print(json.dumps({**measured, **found}))


def run_stage(stage: str, **args) -> dict:
    """The stage in a fresh process: its result, seconds and peak memory."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "competition.devtools.scale", stage, json.dumps(args)],
            stdout=out,
            stderr=err,
        )
        proc.wait()
        out.seek(0)
        err.seek(0)
        lines, why = out.read().strip().splitlines(), err.read().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench-scale stage {stage} {args} failed (exit {proc.returncode}): "
            + (why[-1] if why else "no output")
        )
    found = json.loads(lines[-1])
    peak = found.pop("peak")
    return {**found, "peak_bytes": peak, "peak_growth_bytes": max(0, peak - found["rss_start"])}


def best_of(times: int, stage: str, **args) -> dict:
    """The fastest of `times` runs (a shared machine's noise only ever adds
    time), with the largest peak memory of them all."""
    runs = [run_stage(stage, **args) for _ in range(times)]
    best = min(runs, key=lambda run: run["seconds"])
    worst = max(runs, key=lambda run: run["peak_bytes"])
    return {
        **best,
        "peak_bytes": worst["peak_bytes"],
        "runs_seconds": [run["seconds"] for run in runs],
    }
