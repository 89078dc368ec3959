"""`make kaggle`: the kit and an experiment's trained folds as a Kaggle
dataset, and the offline submission kernel that uses them.

build/kaggle/dataset/  the kit as a wheel (without its developer tools), the
                       wheels of the few runtime dependencies Kaggle's image
                       lacks (built for its Python), the folds' checkpoints,
                       the resolved config, kit-bundle.json and
                       dataset-metadata.json;
build/kaggle/kernel/   kernel-metadata.json and the kernel script (the
                       package's kernel_script.py with the names filled in).

Everything is checked (user name, slugs, checkpoints, size) before anything
is written, built in a scratch folder next to build/kaggle, and moved into
place only when complete.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from competition.config import Config
from competition.errors import KitError
from competition.fileio import write_text_atomic
from competition.kaggle.settings import PLATFORMS
from competition.pipeline import runs
from competition.training.records import read_metrics

MANIFEST = "kit-bundle.json"
SCRIPT = "submit.py"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the source tree holding pyproject.toml
# Subpackages a kernel does not run (benchmarks and probes; the Ray cluster commands).
NOT_SHIPPED = ("devtools", "cluster")
# Distributions Kaggle's Python image already has (TensorFlow 2.20, Keras
# 3.13 and the scientific stack): never bundled. Normalised names.
KAGGLE_IMAGE_HAS = frozenset(
    {
        "tensorflow",
        "keras",
        "numpy",
        "pandas",
        "pydicom",
        "opencv-python",
        "opencv-python-headless",
        "scikit-learn",
        "pyyaml",
        "matplotlib",
        "pyarrow",
        "h5py",
        "lightgbm",
        "nibabel",
    }
)
# Kaggle's rules for the names (the client and the site refuse others).
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
USER = re.compile(r"[a-z0-9][a-z0-9-]*")
SLUG_LENGTH = {"dataset": (6, 50), "kernel": (5, 50), "competition": (3, 64)}
GB = 1024**3


@dataclass(frozen=True)
class Target:
    user: str
    dataset_slug: str
    kernel_slug: str
    competition: str

    @property
    def dataset_id(self) -> str:
        return f"{self.user}/{self.dataset_slug}"

    @property
    def kernel_id(self) -> str:
        return f"{self.user}/{self.kernel_slug}"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_slug(key: str, slug: str, kind: str) -> str:
    low, high = SLUG_LENGTH[kind]
    if not SLUG.fullmatch(slug) or not low <= len(slug) <= high:
        raise KitError(
            f"Config key '{key}': a Kaggle {kind} slug is {low}-{high} characters of lowercase "
            f"letters, digits and single hyphens (e.g. 'ich-kit-models'). Received: {slug!r}"
        )
    return slug


def _competition(config: Config) -> str:
    if not config.kaggle.competition:
        raise KitError(
            "Config key 'kaggle.competition' must name the competition's slug (the kernel's "
            "competition_sources, e.g. rsna-intracranial-hemorrhage-detection). Received: None"
        )
    return check_slug("kaggle.competition", config.kaggle.competition, "competition")


def kaggle_user(config: Config) -> str:
    user = config.kaggle.username or os.environ.get("KAGGLE_USERNAME", "")
    if not user:
        raise KitError(
            "No Kaggle user name: set kaggle.username in the config (or --set "
            "kaggle.username=NAME), or the KAGGLE_USERNAME environment variable."
        )
    if not USER.fullmatch(user):
        raise KitError(
            "Kaggle user names are lowercase letters, digits and hyphens. "
            f"Received: {user!r} (kaggle.username or KAGGLE_USERNAME)"
        )
    return user


def target(config: Config) -> Target:
    kaggle = config.kaggle
    experiment = normalise(config.experiment)
    return Target(
        user=kaggle_user(config),
        dataset_slug=check_slug(
            "kaggle.dataset_slug", kaggle.dataset_slug or f"{experiment}-kit", "dataset"
        ),
        kernel_slug=check_slug(
            "kaggle.kernel_slug", kaggle.kernel_slug or f"{experiment}-submit", "kernel"
        ),
        competition=_competition(config),
    )


def title_of(slug: str) -> str:
    """A title Kaggle turns back into the same slug (lowercase, spaces -> '-')."""
    return slug.replace("-", " ").capitalize()


# --- what goes in -------------------------------------------------------------


# What prediction reads of a fold: the CNN, its ordinal cuts, and the sequence stage.
FOLD_FILES = (
    "best.keras",
    "metrics.json",
    "config.yaml",
    "inputs.json",
    "thresholds.json",
    "sequence/best.keras",
    "sequence/metrics.json",
    "sequence/config.yaml",
)


def experiment_configs(config: Config) -> dict[str, Config]:
    """Each experiment the kernel predicts with, by name, with the config its
    folds were trained with (kaggle.submit stack or blend: several)."""
    from competition.kaggle import levels

    names = levels.experiments(config)
    if names == [config.experiment]:
        return {config.experiment: config}
    return {
        name: runs.experiment_config(name, None, [f"runs_dir={config.runs_dir}"]) for name in names
    }


def bundled_files(config: Config, configs: dict[str, Config]) -> dict[str, Path]:
    """Bundle path -> file: every experiment's folds and the second level's files."""
    from competition.kaggle import levels

    files = {}
    for experiment in configs.values():
        files.update(fold_files(experiment))
    return {**files, **levels.second_level_files(config)}


def fold_files(config: Config) -> dict[str, Path]:
    """Bundle path -> file, for every finished fold of the experiment (each
    checked to have been trained from this config's inputs: the kernel will
    check again, offline, where a mismatch would cost a submission)."""
    files = {}
    for fold in runs.select_folds(config):
        runs.check_same_inputs(
            config, fold, "Bundle with the config these folds were trained with."
        )
        folder = config.runs.fold(fold)
        for name in FOLD_FILES:
            if (folder / name).is_file():
                files[f"runs/{config.experiment}/{folder.name}/{name}"] = folder / name
    return files


def bundled_requirements() -> list[str]:
    """`name==version` of the kit's runtime dependencies Kaggle's image lacks,
    at the versions installed here (the ones the tests ran with)."""
    pins = []
    for requirement in importlib.metadata.requires("competition") or []:
        if ";" in requirement:  # extras and markers: not runtime
            continue
        name = normalise(re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0])
        if name not in KAGGLE_IMAGE_HAS:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
    return sorted(pins)


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise KitError(f"{' '.join(command)} failed:\n{done.stderr.strip()[-2000:]}")


def _isolation() -> list[str]:
    """Build with the setuptools installed here when it is (no download);
    otherwise pip fetches it into an isolated build environment."""
    have = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel"))
    return ["--no-build-isolation"] if have else []


def build_wheel(dest: Path) -> Path:
    """The kit as a wheel, built from a copy of its sources (the checkout
    stays clean of setuptools' build folders)."""
    if not (PACKAGE_ROOT / "pyproject.toml").is_file():
        raise KitError(
            f"make kaggle needs the kit's source tree; no pyproject.toml in {PACKAGE_ROOT}"
        )
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "src"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *NOT_SHIPPED)
        shutil.copytree(PACKAGE_ROOT / "competition", source / "competition", ignore=ignore)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(PACKAGE_ROOT / name, source / name)
        _pip("wheel", "--no-deps", *_isolation(), "-w", str(dest), str(source))
    (wheel,) = dest.glob("competition-*.whl")
    return wheel


def download_wheels(pins: list[str], python: str, dest: Path) -> list[Path]:
    """Binary wheels of `pins` for Kaggle's Python on Linux x86-64."""
    if not pins:
        return []
    before = set(dest.glob("*.whl"))  # the kit's own wheel may already be there
    _pip(
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python,
        *(arg for p in PLATFORMS for arg in ("--platform", p)),
        "-d",
        str(dest),
        *pins,
    )
    return sorted(set(dest.glob("*.whl")) - before)


# --- what comes out -----------------------------------------------------------


def dataset_metadata(config: Config, t: Target) -> dict:
    return {
        "title": title_of(t.dataset_slug),
        "id": t.dataset_id,
        "licenses": [{"name": config.kaggle.license}],
        "subtitle": f"Kit wheel and trained folds of experiment {config.experiment}",
    }


def kernel_metadata(config: Config, t: Target) -> dict:
    return {
        "id": t.kernel_id,
        "title": title_of(t.kernel_slug),
        "code_file": SCRIPT,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": config.kaggle.enable_gpu,
        "enable_tpu": config.kaggle.enable_tpu,
        "enable_internet": False,  # code competitions run offline: say so, never rely on a default
        "dataset_sources": [t.dataset_id],
        "competition_sources": [t.competition],
        "kernel_sources": [],
        "model_sources": [],
    }


def kernel_script(t: Target) -> str:
    """The package's kernel_script.py with the dataset named."""
    template = (
        importlib.resources.files("competition.kaggle").joinpath("kernel_script.py").read_text()
    )
    if template.count(PLACEHOLDER) != 1:
        raise KitError(f"kernel_script.py must hold {PLACEHOLDER!r} exactly once")
    return template.replace(PLACEHOLDER, t.dataset_slug)


PLACEHOLDER = "<dataset-slug>"


def kernel_backend(config: Config, configs: dict[str, Config] | None = None) -> str:
    """The Keras backend the kernel runs on: kaggle.backend, or the one the
    (first bundled experiment's) folds were trained on (folds trained before
    the kit recorded it, or a stack over no experiment: TensorFlow)."""
    if config.kaggle.backend != "training":
        return config.kaggle.backend
    first = next(iter((configs or {config.experiment: config}).values()), None)
    if first is None:
        return "tensorflow"
    folds = runs.select_folds(first)
    return read_metrics(first.runs.fold(folds[0])).get("backend", "tensorflow")


def _size(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def _check_size(config: Config, size: int, what: str) -> None:
    limit = config.kaggle.max_dataset_gb * GB
    if size > limit:
        raise KitError(
            f"The Kaggle dataset would hold {size / GB:.2f} GB ({what}), above "
            f"kaggle.max_dataset_gb={config.kaggle.max_dataset_gb:g}. Bundle fewer folds "
            "(predict.folds) or raise the limit if your Kaggle quota allows."
        )


def _write_json(path: Path, value: dict) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def _fill_dataset(config: Config, t: Target, configs: dict[str, Config],
                  folds: dict[str, Path], folder: Path) -> dict:  # fmt: skip
    wheels = folder / "wheels"
    wheels.mkdir(parents=True)
    kit = build_wheel(wheels)
    pins = bundled_requirements()
    extra = download_wheels(pins, config.kaggle.python, wheels)
    for name, source in folds.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, folder / name)
    config.save(folder / "config.yaml")
    if config.kaggle.submit != "experiment":
        for name, experiment in configs.items():
            experiment.save(folder / "configs" / f"{name}.yaml")
    manifest = {
        "dataset": t.dataset_id,
        "experiment": config.experiment,
        "competition": t.competition,
        "kit_wheel": f"wheels/{kit.name}",
        "wheels": [f"wheels/{w.name}" for w in extra],
        "requirements": pins,
        "python": config.kaggle.python,
        "backend": kernel_backend(config, configs),
        "files": sorted(folds),
        "submit": config.kaggle.submit,
        "experiments": list(configs),
        "time_budget": time_budget(config, configs, wheels),
    }
    _write_json(folder / MANIFEST, manifest)
    _write_json(folder / "dataset-metadata.json", dataset_metadata(config, t))
    return manifest


def _fill_kernel(config: Config, t: Target, folder: Path) -> None:
    folder.mkdir(parents=True)
    write_text_atomic(folder / SCRIPT, kernel_script(t))
    _write_json(folder / "kernel-metadata.json", kernel_metadata(config, t))


def _replace_dir(new: Path, final: Path) -> None:
    """Swap `new` in for `final`: the old one is removed only after the move."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def build(config: Config) -> dict:
    """build/kaggle/{dataset,kernel}; returns a summary with the upload commands."""
    t = target(config)
    configs = experiment_configs(config)
    folds = bundled_files(config, configs)
    _check_size(config, _size(folds.values()), "the fold checkpoints")
    final = Path(config.kaggle.build_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.name}-") as scratch:
        staged = Path(scratch) / final.name
        manifest = _fill_dataset(config, t, configs, folds, staged / "dataset")
        _fill_kernel(config, t, staged / "kernel")
        size = _size(p for p in (staged / "dataset").rglob("*") if p.is_file())
        _check_size(config, size, "checkpoints and wheels")
        _replace_dir(staged, final)
    return {
        "folder": str(final),
        "dataset": t.dataset_id,
        "kernel": t.kernel_id,
        "bytes": size,
        "wheels": [manifest["kit_wheel"], *manifest["wheels"]],
        "files": manifest["files"],
        "time_budget": manifest["time_budget"],
        "weights": weights_note(config),
        "commands": upload_commands(final),
    }


def time_budget(config: Config, configs: dict[str, Config], wheels: Path) -> dict | None:
    """The kernel's projected run time (competition.kaggle.budget): each
    bundled experiment's, summed when there are several (the second level's
    own time is seconds); None with kaggle.time_batches 0."""
    from competition.kaggle import budget

    if config.kaggle.time_batches == 0 or not configs:
        return None
    found = []
    for experiment in configs.values():
        folds = runs.select_folds(experiment)
        measured = budget.measure(experiment, folds, wheels, kernel_backend(experiment))
        found.append(budget.project(experiment, folds, measured))
    if len(found) == 1:
        return found[0]
    return {**found[0], "projected_seconds": round(sum(b["projected_seconds"] for b in found), 1),
            "experiments": dict(zip(configs, found, strict=True))}  # fmt: skip


def weights_note(config: Config) -> str:
    """The kernel predicts from the folds' checkpoints, which hold every weight
    (the backbone's too): no pretrained file travels, and none is fetched."""
    if config.model.weights is None:
        return "the folds were trained from random weights; the checkpoints hold them all"
    return (
        f"the checkpoints hold the trained weights (the backbone's {config.model.weights} "
        "start included): no weights file is bundled, and the kernel fetches none"
    )


def upload_commands(folder: Path) -> list[str]:
    return [
        f"kaggle datasets create -p {folder}/dataset -r zip    "
        f"# first upload; later: kaggle datasets version -p {folder}/dataset -r zip -m 'new folds'",
        f"kaggle kernels push -p {folder}/kernel",
    ]
