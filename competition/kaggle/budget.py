"""The kernel's time budget, projected by `make kaggle` before anything is
uploaded:

    install + import + listing the test set + loading the ensemble
        + test images x seconds per image

Seconds per image is for the whole ensemble (every fold x TTA view, and the
second stage when predict.stage resolves to 2), measured here by running
the kernel's own prediction (from the image files, as the kernel reads
them) on two sample sizes of the local test set, in a fresh process on the
kernel's backend (its imports timed too; make kaggle itself never loads
TensorFlow): the difference gives the per-image cost, the rest is loading.
`kaggle.images_per_second` (the rate of one fold and view on the target
accelerator, e.g. from a kernel's log or make bench-gpu) replaces the
per-image cost measured here; the test set's size on Kaggle is
`kaggle.test_images` (0: the local one). Over `kaggle.time_limit_hours` the
projection warns with what each cut would give. The kernel prints its own
run time beside the projection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from competition.config import Config
from competition.errors import KitError
from competition.kaggle.settings import PLATFORMS

SAFETY = 0.9  # warn above this share of the limit


# Run in a fresh process, as the kernel is: its imports, then the two timed
# predictions (each loads the ensemble, as the kernel does once).
PROBE = r"""
import json, sys, time
started = time.perf_counter()
from competition.backend import isolate
isolate()  # as the kernel: the other backends' frameworks stay out
import keras
import competition.pipeline.predict
from competition.config import load_config
from competition.kaggle.budget import timed_predictions
imported = time.perf_counter() - started
found = timed_predictions(load_config(sys.argv[1]), json.loads(sys.argv[2]))
print(json.dumps({"import_seconds": imported, **found}))
"""


def _timed_prediction(config: Config, folds: list[int], ids: list[str], fields) -> float:
    from competition.pipeline.predict import predict_test

    subset = fields.loc[ids] if fields is not None else None
    started = time.perf_counter()
    predict_test(config, folds, ids, subset)
    return time.perf_counter() - started


def timed_predictions(config: Config, folds: list[int]) -> dict:
    """Loading seconds and seconds per test image of the ensemble, from the
    image files (as the kernel reads them): two sample sizes, the difference
    is the per-image cost."""
    from competition.pipeline.assemble import test_set

    config = replace(config, data=replace(config.data, source="files"))
    started = time.perf_counter()
    _, ids, fields = test_set(config)  # the sample and the test images, listed once
    listing = time.perf_counter() - started
    batch = config.predict.batch_size  # whole batches: a part batch costs as much as a full one
    large = min(config.kaggle.time_batches * batch, len(ids))
    small = min(batch, max(1, large // 4))
    t_small = _timed_prediction(config, folds, ids[:small], fields)
    t_large = _timed_prediction(config, folds, ids[:large], fields)
    per_image = max((t_large - t_small) / max(large - small, 1), 1e-6)
    return {
        "local_test_images": len(ids),
        "listing_seconds": listing,
        "load_seconds": max(t_small - small * per_image, 0.0),
        "seconds_per_image": per_image,
    }


def measure(config: Config, folds: list[int], wheels: Path, backend: str) -> dict:
    """Every measured part of the projection: installing the bundle's wheels
    (offline, as the kernel does), then a fresh process on the kernel's
    backend importing the kit and timing its predictions."""
    files = [str(p) for p in sorted(wheels.glob("*.whl"))]
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        # for Kaggle's Python and platform, whatever this machine's Python is
        target = ["--python-version", config.kaggle.python, "--only-binary=:all:",
                  *(arg for p in PLATFORMS for arg in ("--platform", p))]  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "-q",
             "--disable-pip-version-check", *target, "--target", f"{scratch}/site", *files],
            check=True, capture_output=True,
        )  # fmt: skip
        install = time.perf_counter() - started
        config.save(Path(scratch) / "config.yaml")
        env = {**os.environ, "KERAS_BACKEND": backend}
        done = subprocess.run(
            [sys.executable, "-c", PROBE, f"{scratch}/config.yaml", json.dumps(folds)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
    if done.returncode != 0:
        raise KitError(f"Timing the kernel's prediction failed:\n{done.stderr.strip()[-2000:]}")
    return {"install_seconds": install, **json.loads(done.stdout.strip().splitlines()[-1])}


def project(config: Config, folds: list[int], measured: dict) -> dict:
    """The projected run time of the kernel on Kaggle and what it is made of."""
    images = config.kaggle.test_images or measured["local_test_images"]
    per_image = measured["seconds_per_image"]
    source = "measured here"
    if config.kaggle.images_per_second:
        views = len(folds) * max(len(config.predict.tta), 1)
        per_image = views / config.kaggle.images_per_second
        source = f"kaggle.images_per_second={config.kaggle.images_per_second:g} x {views} views"
    start = sum(measured[k] for k in ("install_seconds", "import_seconds", "listing_seconds",
                                      "load_seconds"))  # fmt: skip
    seconds = start + images * per_image
    limit = config.kaggle.time_limit_hours * 3600
    return {
        **{k: round(v, 7) for k, v in measured.items()},
        "test_images": images,
        "seconds_per_image_used": round(per_image, 7),
        "rate_source": source,
        "start_seconds": round(start, 2),
        "projected_seconds": round(seconds, 1),
        "limit_seconds": limit,
        "folds": len(folds),
        "tta_views": max(len(config.predict.tta), 1),
    }


def cuts(budget: dict) -> list[str]:
    """What fewer folds or TTA views would give (the per-image cost scales with both)."""
    per_view = budget["seconds_per_image_used"] / (budget["folds"] * budget["tta_views"])
    found = []
    for folds, views in ((max(1, budget["folds"] // 2), budget["tta_views"]), (budget["folds"], 1)):
        if (folds, views) != (budget["folds"], budget["tta_views"]):
            hours = (
                budget["start_seconds"] + budget["test_images"] * per_view * folds * views
            ) / 3600
            what = (
                f"{folds} fold(s) (predict.folds)"
                if folds != budget["folds"]
                else "no TTA (predict.tta: [none])"
            )
            found.append(f"{what}: {hours:.2f} h")
    return found


def summary_line(budget: dict | None) -> str:
    if budget is None:
        return "Kernel time not projected (kaggle.time_batches: 0)"
    hours, limit = budget["projected_seconds"] / 3600, budget["limit_seconds"] / 3600
    line = (
        f"Kernel time projected: {hours:.2f} h of the {limit:g}-hour limit "
        f"({budget['start_seconds']:.0f} s to start, {budget['test_images']:,} test images at "
        f"{budget['seconds_per_image_used'] * 1000:.1f} ms each, {budget['rate_source']})"
    )
    if budget["projected_seconds"] > SAFETY * budget["limit_seconds"]:
        line += (
            f"\nwarning: that is over {SAFETY:.0%} of the limit. Cut: "
            + "; ".join(cuts(budget))
            + "; or a smaller preprocess.image_size / backbone (retrain)."
        )
    return line
