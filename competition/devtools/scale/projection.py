"""From the measurements to the real competition: growth exponents between
sizes, each stage projected to 752,803 / 121,232 images on 8 cores and on
Kaggle's 4 CPUs (time, peak memory, disk), and the ratios against their targets."""

from __future__ import annotations

import math

REAL_TRAIN = 752_803  # the RSNA ICH training slices


REAL_TEST = 121_232  # and test slices


CORES = {"8-core machine": 8, "Kaggle notebook": 4}


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


ISIC_TRAIN = 401_059  # ISIC 2024's training lesions
ISIC_EPOCH = 1000 * 64  # the preset's epoch: train.steps_per_epoch x train.batch_size


def isic_projection(series: dict, workers: int) -> dict:
    """ISIC 2024 at its real size: the index and each cache's build (time on
    8 cores and Kaggle's 4 CPUs, disk), a full pass and the preset's epoch
    of balanced batches read from each cache on one thread."""
    largest = max(series, key=int)
    n, found = int(largest), series[largest]

    def grown(stage: str) -> float:
        b = exponent(series, stage, "seconds") or 1.0
        return found[stage]["seconds"] * (ISIC_TRAIN / n) ** max(b, 1.0)

    rows = {}
    for stage in ("index", "cache_raw", "cache_jpeg"):
        seconds = grown(stage)
        rows[stage] = {
            "seconds": {w: seconds * workers / cores for w, cores in CORES.items()},
            "disk_gib": found[stage].get("bytes", 0) * ISIC_TRAIN / n / 2**30,
        }
    for codec in ("raw", "jpeg"):
        rate = found[f"epoch_{codec}"]["images_per_s"]
        rows[f"pass_{codec}"] = {"seconds": dict.fromkeys(CORES, ISIC_TRAIN / rate), "disk_gib": 0}
        rows[f"epoch_{codec}"] = {"seconds": dict.fromkeys(CORES, ISIC_EPOCH / rate), "disk_gib": 0}
    return rows
