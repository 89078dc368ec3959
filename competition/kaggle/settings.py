"""The `kaggle:` section: who uploads, the names of the dataset and the
kernel, and what the kernel runs on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from competition.knobs import knob

# The backend the kernel runs on: `training` is the one the folds were trained on.
KERNEL_BACKENDS = ("training", "tensorflow", "jax", "torch")
# csv: the kernel writes submission.csv; evaluation_api: it serves predict(series_path)
# to the inference server the competition ships (RSNA 2025 Aneurysm's form).
KERNEL_FORMS = ("csv", "evaluation_api")
# What the kernel submits: the experiment's fold ensemble, its stack (the stack:
# section's boosters over stack.experiments' predictions), or a blend (kaggle.blend).
KERNEL_SUBMITS = ("experiment", "stack", "blend")
# Kaggle's image: Linux x86-64 (the bundled binary wheels are built for it)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass(frozen=True)
class KaggleConfig:
    username: str | None = None
    competition: str | None = None
    dataset_slug: str | None = None
    kernel_slug: str | None = None
    enable_gpu: bool = True
    enable_tpu: bool = False  # a TPU notebook: with kaggle.backend jax and enable_gpu false
    backend: Literal[KERNEL_BACKENDS] = "training"
    python: str = "3.12"
    license: str = "CC0-1.0"
    max_dataset_gb: float = knob(100.0, gt=0)
    build_dir: str = "build/kaggle"
    form: Literal[KERNEL_FORMS] = "csv"
    submit: Literal[KERNEL_SUBMITS] = "experiment"
    blend: str | None = None  # kaggle.submit blend: the blend's folder under runs_dir
    # evaluation_api: the server class the competition ships, as module.Class
    inference_server: str = "kaggle_evaluation.rsna_inference_server.RSNAInferenceServer"
    time_limit_hours: float = knob(12.0, gt=0)  # the competition's kernel limit
    test_images: int = knob(0, ge=0)  # the hidden test set's size on Kaggle (0: the local one)
    # one fold and TTA view's images per second on the target accelerator (0: measured here)
    images_per_second: float = knob(0.0, ge=0)
    # batches of the local test set timed for the projection (0: no projection).
    # Enough for the steady state: the loader's workers fill their queue while
    # the first batch is traced, a head start that a short run counts as speed
    # (4 batches measured half the kernel's per-image time on the default synthetic)
    time_batches: int = knob(16, ge=0)
