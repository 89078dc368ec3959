"""The scale benchmark (`make bench-scale` -> bench-scale.json and a table):
every data stage at several sizes of the synthetic competition, in one run,
with its time and peak memory, the growth exponent between sizes, and the
projection to the real RSNA competition on an 8-core machine and on Kaggle's
4-CPU notebook, with the disk each artifact needs.

Each stage runs in a fresh process (`python -m competition.devtools.scale
STAGE ARGS`): its peak memory is what that process holds itself (anonymous
and shared memory, sampled every 50 ms; the pages of a memory-mapped cache it
reads are the kernel's page cache, evictable, and reported apart as VmHWM),
or its largest worker's, and its growth is measured above what its imports
hold.

Where pixels do not matter (labels, index, folds, the overhead of a cache
build and an epoch) the competitions are written with small 64 px images;
what a real image costs (decode a 512 x 512 DICOM, each codec's bytes and
decode time at 256 x 256 x 3, fit from an encoded cache) is measured on a
smaller competition of real-size slices and projected per image.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REAL_TRAIN, REAL_TEST, CORES = 752_803, 121_232, {"8-core machine": 8, "Kaggle notebook": 4}
TRAIN_PER_PATIENT = 36  # train slices per synthetic patient (studies x slices, 80% train)
CODECS = ("raw", "zstd", "jpeg")
TARGETS = {
    "labels_real_seconds": 3.0,
    "labels_real_peak_gib": 1.0,
    "submission_real_seconds": 10.0,
    "zstd_kib_per_image": 45.0,
    "zstd_decode_per_core": 1500.0,
    "fit_zstd_vs_memory[efficientnet_b0]": 0.9,
    "kernel_input_hours_kaggle_4cpu": 9.0,  # Kaggle's limit for a notebook run
}


# --- stages, each run in its own process ------------------------------------------------


def scale_config(root: str, *overrides: str):
    from competition.config import load_config

    return load_config(
        None,
        [
            f"data.root={root}",
            "synth.generate=true",
            "preprocess.neighbors=0",
            f"runs_dir={root}/runs",
            f"predict.submissions_dir={root}/submissions",
            *overrides,
        ],
    )


def stage_labels(root: str) -> dict:
    from competition.data.labels import read_labels
    from competition.layout import Layout

    config = scale_config(root)
    return {"images": len(read_labels(config.task, Layout.from_config(config).train_csv))}


def stage_index(root: str, workers: int) -> dict:
    from competition.data.index import write_index
    from competition.layout import Layout

    layout = Layout.from_config(scale_config(root))
    write_index(layout, workers)
    return {"bytes": layout.index_csv.stat().st_size}


def stage_folds(root: str) -> dict:
    from competition.data.prepare import write_folds_for
    from competition.layout import Layout

    config = scale_config(root)
    layout = Layout.from_config(config)
    write_folds_for(config, layout)
    return {"bytes": layout.folds_csv.stat().st_size}


def codec_config(root: str, codec: str, size: int):
    return scale_config(
        root,
        f"data.cache_codec={codec}",
        f"data.cache_dir=cache-{codec}-{size}",
        f"preprocess.image_size={size}",
        "data.source=cache",
    )


def stage_cache(root: str, codec: str, size: int, workers: int) -> dict:
    from competition.data.cache import build_split

    result = build_split(codec_config(root, codec, size), "train", workers)
    return {"bytes": result["bytes"], "images": result["images"]}


def stage_epoch(root: str, codec: str, size: int, workers: int) -> dict:
    """One shuffled epoch of training batches from the cache, no model."""
    from competition.data.generator import DataGenerator
    from competition.data.sources import slice_source

    source = slice_source(codec_config(root, codec, size), "train")
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
    from competition.inference.assemble import submit, test_images
    from competition.layout import Layout

    config = scale_config(root)
    sample = sub.read_sample(config.task, Layout.from_config(config).sample_submission)
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


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def _own() -> int:
    """What the process holds itself: anonymous and shared memory. Pages of
    a memory-mapped file it reads are the kernel's page cache (evictable),
    not the process's."""
    fields = ("RssAnon:", "RssShmem:")
    lines = Path("/proc/self/status").read_text().splitlines()
    return sum(int(line.split()[1]) * 1024 for line in lines if line.startswith(fields))


class _PeakSampler(threading.Thread):
    """The largest _own() seen, sampled every 50 ms while the stage runs
    (more often slows the stage it measures)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = _own(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, _own())

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, _own())


def _workers_peak() -> int:
    """The largest worker process's peak resident size (they map no files)."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


IMPORTS = {  # loaded before the clock starts: TensorFlow alone takes seconds
    "labels": ["competition.data.labels"],
    "index": ["competition.data.index"],
    "folds": ["competition.data.prepare", "competition.data.folds"],
    "cache": ["competition.data.cache"],
    "epoch": ["competition.data.generator", "competition.data.sources"],
    "submission": ["competition.inference.assemble"],
}


def _child(stage: str, args: dict) -> None:
    import importlib

    for module in IMPORTS[stage]:
        importlib.import_module(module)
    start, sampler = _own(), _PeakSampler()
    sampler.start()
    started = time.perf_counter()
    found = STAGES[stage](**args)
    seconds = time.perf_counter() - started
    peak = max(sampler.stop(), _workers_peak())
    measured = {"seconds": seconds, "rss_start": start, "peak": peak, "vm_hwm": _status("VmHWM")}
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


# --- the competitions ---------------------------------------------------------------------


def write_competition(root: Path, train_images: int, image_size: int, workers: int) -> int:
    from competition.synthetic.generate import generate

    patients = max(4, round(train_images / TRAIN_PER_PATIENT))
    config = scale_config(str(root), f"synth.patients={patients}", f"synth.image_size={image_size}")
    generate(config, workers)
    from competition.layout import Layout

    return len(list(Layout.from_config(config).image_dir("train").iterdir()))


def real_size_tables(root: Path) -> None:
    """Only the CSVs, at the real competition's size (see label_tables_only)."""
    from competition.layout import Layout
    from competition.synthetic.head_ct import label_tables_only

    label_tables_only(Layout.from_config(scale_config(str(root))), REAL_TRAIN, REAL_TEST)
    (root / "synthetic.json").write_text("{}")  # a folder the kit may write into


# --- the measurements ---------------------------------------------------------------------


def scale_series(scratch: Path, sizes: list[int], workers: int) -> dict:
    series = {}
    for size in sizes:
        root = scratch / f"n{size}"
        print(f"bench-scale: writing {size:,} train slices (64 px) ...", flush=True)
        images = write_competition(root, size, 64, workers)
        found = {"train_images": images}
        for stage, args in (
            ("labels", {}),
            ("index", {"workers": workers}),
            ("folds", {}),
            ("submission", {}),
        ):
            found[stage] = run_stage(stage, root=str(root), **args)
        for codec in CODECS:
            found[f"cache_{codec}"] = run_stage(
                "cache", root=str(root), codec=codec, size=64, workers=workers
            )
        found["epoch_raw"] = run_stage("epoch", root=str(root), codec="raw", size=64, workers=1)
        found["epoch_zstd"] = run_stage("epoch", root=str(root), codec="zstd", size=64, workers=1)
        series[str(images)] = found
        print(f"bench-scale: {images:,} done", flush=True)
    return series


def pixel_costs(scratch: Path, train_images: int, workers: int) -> dict:
    """Per image at the real size: each codec's build rate from 512 px
    DICOMs, bytes and one-core decode rate at 256 x 256 x 3, and the error
    of the lossy codec."""
    from competition.data.cache import CacheSource, split_dir
    from competition.data.sources import image_source

    root = scratch / "pixels"
    print(f"bench-scale: writing {train_images:,} slices at 512 px ...", flush=True)
    write_competition(root, train_images, 512, workers)
    run_stage("index", root=str(root), workers=workers)
    found = {}
    exact = None
    for codec in (*CODECS, "png"):
        build = run_stage("cache", root=str(root), codec=codec, size=256, workers=workers)
        config = codec_config(str(root), codec, 256)
        source = CacheSource(split_dir(config, "train"), image_source(config, "train"), False)
        rows = np.arange(len(source.index))
        started = time.perf_counter()
        images = np.concatenate([source.take(rows[i : i + 64]) for i in range(0, len(rows), 64)])
        decode = len(rows) / (time.perf_counter() - started)
        exact = images if codec == "raw" else exact
        found[codec] = {
            "images": build["images"],
            "build_images_per_s": build["images"] / build["seconds"],
            "build_workers": workers,
            "kib_per_image": build["bytes"] / build["images"] / 1024,
            "decode_images_per_s_1core": decode,
            "mean_abs_error": float(np.abs(images.astype(np.int16) - exact).mean()),
        }
    return found


def fit_from_codec(scratch: Path, workers: int) -> dict:
    """fit of efficientnet_b0 at 128 px fed from the zstd cache vs the same
    images in memory (bench.fit_and_predict's protocol)."""
    from competition.data.cache import CacheSource, build_split, split_dir
    from competition.data.sources import image_source
    from competition.devtools.bench import fit_and_predict

    root = str(scratch / "pixels")
    config = codec_config(root, "zstd", 128)
    build_split(config, "train", workers)
    source = CacheSource(split_dir(config, "train"), image_source(config, "train"), False)
    ids = source.index[:640].tolist()
    images = source.gather(np.asarray(ids))
    config = scale_config(
        root, "preprocess.image_size=128", "train.batch_size=32", "train.workers=2"
    )
    return fit_and_predict(config, ids, source, images, ["efficientnet_b0"], "_zstd")


def kernel_rate(scratch: Path, preset: Path) -> dict:
    """The Kaggle kernel's prediction from DICOM with the preset's ensemble
    (its backbone, folds, TTA views, input size and 2.5D setting; random
    weights, which do not change the speed), on the 512 px test slices:
    images/s end to end on this CPU, and of the input side alone (read,
    decode, window, resize, stack) on one thread."""
    from competition.config import load_config
    from competition.data.index import read_index
    from competition.data.pixelspec import model_input_shape
    from competition.data.sources import open_source
    from competition.inference.predict import ensemble_model, inference_generator
    from competition.layout import Layout
    from competition.training.model import build_model

    root = scratch / "pixels"
    config = load_config(
        preset,
        [f"data.root={root}", "model.weights=null", "data.source=files", "train.workers=1"],
    )
    index = read_index(Layout.from_config(config))
    ids = index.loc[(index["split"] == "test") & index["readable"], "image_id"].tolist()
    shape = model_input_shape(config)
    models = []
    for fold in range(config.folds.k):
        models.append(build_model(config.model, shape, config.task))
        models[-1].name = f"fold{fold}"  # nested models need distinct names
    model = ensemble_model(models, config.predict.tta, shape)
    source = open_source(config, "test")
    warm = inference_generator(config, ids[: config.predict.batch_size], source)
    model.predict(warm, verbose=0)  # tracing, first reads
    gen = inference_generator(config, ids, source)
    started = time.perf_counter()
    model.predict(gen, verbose=0)
    end_to_end = len(ids) / (time.perf_counter() - started)
    started = time.perf_counter()
    for batch in range(len(gen)):
        gen[batch]
    inputs = len(ids) / (time.perf_counter() - started)
    return {
        "preset": str(preset),
        "images": len(ids),
        "folds": config.folds.k,
        "tta": list(config.predict.tta),
        "input_shape": list(shape),
        "backbone": config.model.backbone,
        "images_per_s": end_to_end,
        "input_images_per_s_1thread": inputs,
    }


def exponent(series: dict, stage: str, key: str) -> float | None:
    sizes = sorted(series, key=int)[-2:]
    if len(sizes) < 2:
        return None
    (n0, n1), values = map(int, sizes), [series[s][stage][key] for s in sizes]
    if min(values) <= 0:
        return None
    return math.log(values[1] / values[0]) / math.log(n1 / n0)


def projection(report: dict) -> dict:
    """Each stage at the real size: time on 8 cores and on Kaggle's 4, the
    peak memory and the disk. Times grow from the largest measured size with
    the measured exponent (at least 1: small sizes hide fixed costs), parallel
    stages divide by the cores; per-image pixel costs come from the real-size
    slices."""
    series, pixels = report["series"], report["pixels"]
    largest = max(series, key=int)
    n, found = int(largest), series[largest]
    real_n = {"labels": REAL_TRAIN, "index": REAL_TRAIN, "folds": REAL_TRAIN}
    rows = {}

    def peak_at(run: dict, times: float) -> float:
        """Imports as measured, the stage's own memory grown linearly."""
        return (run["rss_start"] + run["peak_growth_bytes"] * times) / 2**30

    def grow(stage: str, key: str, to: int) -> float:
        b = exponent(series, stage, key) or 1.0
        return found[stage][key] * (to / n) ** max(b, 1.0)

    for stage, parallel in (("labels", False), ("index", True), ("folds", False)):
        seconds = grow(stage, "seconds", real_n[stage])
        rows[stage] = {
            "seconds": {
                where: seconds * (report["workers"] / cores if parallel else 1)
                for where, cores in CORES.items()
            },
            "peak_gib": (
                found[stage]["peak_bytes"]
                + grow(stage, "peak_growth_bytes", real_n[stage])
                - found[stage]["peak_growth_bytes"]
            )
            / 2**30,
            "disk_gib": found[stage].get("bytes", 0) * REAL_TRAIN / n / 2**30,
        }
    measured = report["real"]["labels"]  # read at the real size: no projection needed
    rows["labels"]["seconds"] = dict.fromkeys(CORES, measured["seconds"])
    rows["labels"]["peak_gib"] = measured["peak_bytes"] / 2**30
    test_n = found["submission"]["images"]
    seconds = found["submission"]["seconds"] * REAL_TEST / test_n
    rows["submission"] = {
        "seconds": dict.fromkeys(CORES, report["real"]["submission"]["seconds"] or seconds),
        "peak_gib": report["real"]["submission"]["peak_bytes"] / 2**30,
        "disk_gib": 0.03,
    }
    for codec in CODECS:
        pixel = pixels[codec]
        per_core = pixel["build_images_per_s"] / pixel["build_workers"]
        rows[f"cache_{codec}"] = {
            "seconds": {w: REAL_TRAIN / (per_core * c) for w, c in CORES.items()},
            "peak_gib": peak_at(found[f"cache_{codec}"], REAL_TRAIN / n),
            "disk_gib": pixel["kib_per_image"] * 1024 * REAL_TRAIN / 2**30,
        }
    kernel = report["kernel"]
    rows["kernel_predict"] = {  # the input side is per core; the model runs on Kaggle's GPU
        "seconds": {
            w: REAL_TEST / (kernel["input_images_per_s_1thread"] * c) for w, c in CORES.items()
        },
        "peak_gib": 0.0,
        "disk_gib": 0.0,
    }
    for codec in ("raw", "zstd"):
        rate = pixels[codec]["decode_images_per_s_1core"]
        rows[f"epoch_{codec}"] = {
            "seconds": {
                w: REAL_TRAIN / (rate * (c if codec != "raw" else 1)) for w, c in CORES.items()
            },
            "peak_gib": peak_at(found[f"epoch_{codec}"], REAL_TRAIN / n),
            "disk_gib": 0.0,
        }
    return rows


def ratios(report: dict) -> dict:
    pixels, fit, real = report["pixels"], report["fit_zstd"], report["real"]
    return {
        "labels_real_seconds": real["labels"]["seconds"],
        "labels_real_peak_gib": real["labels"]["peak_bytes"] / 2**30,
        "submission_real_seconds": real["submission"]["seconds"],
        "zstd_kib_per_image": pixels["zstd"]["kib_per_image"],
        "zstd_decode_per_core": pixels["zstd"]["decode_images_per_s_1core"],
        "zstd_vs_png_decode": pixels["zstd"]["decode_images_per_s_1core"]
        / pixels["png"]["decode_images_per_s_1core"],
        "zstd_vs_raw_size": pixels["zstd"]["kib_per_image"] / pixels["raw"]["kib_per_image"],
        "kernel_images_per_s_cpu_here": report["kernel"]["images_per_s"],
        "kernel_test_hours_cpu_only_here": REAL_TEST / report["kernel"]["images_per_s"] / 3600,
        "kernel_input_hours_kaggle_4cpu": REAL_TEST
        / (report["kernel"]["input_images_per_s_1thread"] * CORES["Kaggle notebook"])
        / 3600,
        "fit_zstd_vs_memory[efficientnet_b0]": fit["fit_pipeline_steps_per_s_zstd[efficientnet_b0]"]
        / fit["fit_memory_steps_per_s_zstd[efficientnet_b0]"],
    }


def growth(report: dict) -> dict:
    """Growth exponent between the two largest sizes, time and memory."""
    series = report["series"]
    stages = next(iter(series.values())).keys() - {"train_images"}
    return {
        stage: {
            "time": exponent(series, stage, "seconds"),
            "memory": exponent(series, stage, "peak_growth_bytes"),
        }
        for stage in sorted(stages)
    }


def run(
    sizes: list[int],
    pixel_images: int,
    workers: int,
    out: Path,
    keep: Path | None,
    preset: Path,
) -> dict:
    from competition.devtools.bench import machine

    scratch = Path(keep or tempfile.mkdtemp(prefix="bench-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "workers": workers, "sizes": sizes}
    real = scratch / "real"
    real_size_tables(real)
    report["real"] = {
        "labels": best_of(3, "labels", root=str(real)),
        "submission": best_of(3, "submission", root=str(real)),
    }
    report["series"] = scale_series(scratch, sizes, workers)
    report["pixels"] = pixel_costs(scratch, pixel_images, workers)
    report["fit_zstd"] = fit_from_codec(scratch, workers)
    report["kernel"] = kernel_rate(scratch, preset)
    report["growth"] = growth(report)
    report["projection"] = projection(report)
    report["ratios"] = ratios(report)
    from competition.fileio import write_text_atomic

    write_text_atomic(out, json.dumps(report, indent=2))
    return report


def _verdict(name: str, value: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return ""
    upper = name.endswith(("seconds", "gib", "kib_per_image", "hours_kaggle_4cpu"))
    met = value <= target if upper else value >= target
    return f"{'ok' if met else 'MISSED'} ({'<=' if upper else '>='} {target:g})"


def table(report: dict) -> str:
    lines = ["| target | value | verdict |", "|---|---:|---|"]
    for name, value in report["ratios"].items():
        lines.append(f"| {name} | {value:,.3g} | {_verdict(name, value)} |")
    sizes = sorted(report["series"], key=int)
    lines += [
        "",
        "| stage | "
        + " | ".join(f"{int(s):,} s / peak MiB" for s in sizes)
        + " | exponent time / memory |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for stage, exps in report["growth"].items():
        runs = [report["series"][size][stage] for size in sizes]
        cells = [f"{run['seconds']:.2f} / {run['peak_bytes'] / 2**20:,.0f}" for run in runs]
        shown = [f"{v:.2f}" if v is not None else "-" for v in exps.values()]
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {' / '.join(shown)} |")
    lines += [
        "",
        "| stage at 752,803 / 121,232 images | 8 cores | Kaggle 4 CPUs | peak GiB | disk GiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage, row in report["projection"].items():
        times = [_duration(row["seconds"][w]) for w in CORES]
        lines.append(
            f"| {stage} | {' | '.join(times)} | {row['peak_gib']:.2f} | {row['disk_gib']:,.1f} |"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    _child(sys.argv[1], json.loads(sys.argv[2]))
