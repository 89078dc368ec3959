"""`make bench`: every measurement in one run, the ratios against their
targets, the table, bench.json."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from competition.config import Config
from competition.devtools.bench.decoding import decode_rates
from competition.devtools.bench.fitting import fit_and_predict
from competition.devtools.bench.loading import loaders
from competition.devtools.bench.memory_growth import memory_growth
from competition.devtools.machine import machine
from competition.fileio import write_text_atomic
from competition.workers import worker_count

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


def ratios(r: dict) -> dict:
    loaders_ = r["loaders"]
    fit = r["fit_predict"]
    out = {
        "cache_vs_seeds": loaders_["kit_cache_flips"] / loaders_["seeds_generator"],
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
    if "tfdata_over_dicom" in loaders_:  # measured on TensorFlow only
        out["cache_vs_tfdata"] = loaders_["kit_cache_flips"] / loaders_["tfdata_over_dicom"]
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
    from competition.augment.layers import image_layers_on
    from competition.data.cache.build import build_split
    from competition.data.cache.source import CacheSource
    from competition.data.index import read_index
    from competition.data.neighbors import NeighborSource, positions_by_series
    from competition.data.sources import image_source
    from competition.pipeline.prepare import ensure_index

    layout = ensure_index(config)
    workers = config.data.workers
    # The peers are measured against the memory-mapped cache (bench-scale has the codecs).
    config = replace(config, data=replace(config.data, cache_codec="raw"))
    build_split(config.cache, "train", workers)
    dicom = image_source(config.inputs, "train")
    cached = CacheSource(config.cache.split_folder("train"), dicom, files_for_missing=False)
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
        "memory": memory_growth(config_path, overrides, config.cache.split_folder("train")),
    }
    report["ratios"] = ratios(report)
    write_text_atomic(out, json.dumps(report, indent=2))
    return report
