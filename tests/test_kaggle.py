"""`make kaggle`: the bundle, the kernel run offline as Kaggle would run it,
and the real `kaggle` client pushing to a local stand-in server."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from kaggle_stand_in import StandIn

from competition.errors import KitError
from competition.inference.submission import validate_file
from competition.kaggle import bundle as kaggle
from competition.kaggle.bundle import normalise
from competition.pipeline.train import train_folds

from conftest import PRESETS, TRAINED_WITH, preset_config, small_config
from helpers import REPO, sibling_python

USER = "kit-tester"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # wheels this venv can install


def bundle_config(base, runs, build, *overrides):
    return small_config(
        base.data.root,
        f"runs_dir={runs}",
        f"kaggle.build_dir={build}",
        f"kaggle.username={USER}",
        f"kaggle.python='{PYTHON}'",
        "kaggle.time_batches=0",  # the projection's timing: only where it is tested
        *TRAINED_WITH,
        *overrides,
    )


@pytest.fixture(scope="module")
def trained_runs(small_competition, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    train_folds(small_config(small_competition.data.root, f"runs_dir={runs}", *TRAINED_WITH), [0])
    return runs


@pytest.fixture(scope="module")
def bundle(small_competition, trained_runs, tmp_path_factory):
    build = tmp_path_factory.mktemp("b") / "kaggle"
    config = bundle_config(small_competition, trained_runs, build, "kaggle.time_batches=16")
    return config, kaggle.build(config)


def test_bundle_holds_the_wheels_folds_config_and_metadata(bundle):
    config, summary = bundle
    dataset, kernel = Path(summary["folder"]) / "dataset", Path(summary["folder"]) / "kernel"
    wheels = sorted(p.name for p in (dataset / "wheels").glob("*.whl"))
    assert [normalise(w.split("-")[0]) for w in wheels] == [
        "competition", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"
    ]  # fmt: skip
    assert not any(w.startswith(("tensorflow", "keras", "numpy", "pandas")) for w in wheels)
    assert sorted(Path(w).name for w in summary["wheels"]) == wheels  # each listed once
    (kit,) = (dataset / "wheels").glob("competition-*.whl")
    names = zipfile.ZipFile(kit).namelist()
    assert (
        "competition/kaggle/kernel.py" in names and "competition/kaggle/kernel_script.py" in names
    )
    assert not any(n.startswith(("tests/", "competition/devtools")) for n in names)  # not shipped
    assert (dataset / "runs" / config.experiment / "fold0" / "best.keras").is_file()
    assert (dataset / "config.yaml").is_file()
    meta = json.loads((dataset / "dataset-metadata.json").read_text())
    assert meta["id"] == f"{USER}/small-kit" and meta["licenses"] == [{"name": "CC0-1.0"}]
    assert 6 <= len(meta["title"]) <= 50
    km = json.loads((kernel / "kernel-metadata.json").read_text())
    assert km["id"] == f"{USER}/small-submit" and km["code_file"] == "submit.py"
    assert (km["language"], km["kernel_type"], km["is_private"]) == ("python", "script", True)
    assert km["enable_internet"] is False and km["enable_gpu"] is True
    assert km["dataset_sources"] == [meta["id"]]
    assert km["competition_sources"] == ["rsna-intracranial-hemorrhage-detection"]
    script = (kernel / "submit.py").read_text()
    assert 'DATASET_SLUG = "small-kit"' in script and "--no-index" in script
    assert any("kaggle kernels push -p" in c for c in summary["commands"])


def test_the_title_resolves_to_the_slug_as_the_client_computes_it(bundle):
    from slugify import slugify  # the kaggle client's own slug function

    _, summary = bundle
    km = json.loads((Path(summary["folder"]) / "kernel" / "kernel-metadata.json").read_text())
    assert slugify(km["title"]) == km["id"].split("/")[1]


# --- run as Kaggle would: offline, only Kaggle's packages --------------------

LEFT_OUT = {  # what Kaggle's image lacks: the kit and the wheels it bundles; dev tools
    "competition", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg",
    "pytest", "ruff", "kaggle", "kagglesdk",
}  # fmt: skip


def kaggle_image_python(dest: Path) -> Path:
    """A fresh virtual environment that sees this one's packages except
    LEFT_OUT (symlinked, so nothing is downloaded): Kaggle's image, locally."""
    return sibling_python(dest, LEFT_OUT)


def offline(command: list[str]) -> list[str]:
    """The command in a network namespace of its own (loopback down)."""
    works = shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"]).returncode == 0
    return ["unshare", "-rn", *command] if works else command


def fake_kaggle_root(root: Path, dataset: Path, competition) -> Path:
    layout = competition.layout
    inputs = root / "input"
    shutil.copytree(dataset, inputs / "small-kit")
    comp = inputs / "rsna-intracranial-hemorrhage-detection"
    comp.mkdir(parents=True)
    (comp / layout.task.images.test_dir).symlink_to(layout.image_dir("test"))
    shutil.copy2(layout.sample_submission, comp)
    (root / "working").mkdir()
    return root


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["training", "jax"])
def test_kernel_runs_offline_in_a_kaggle_like_environment(
    bundle, small_competition, trained_runs, backend, tmp_path
):
    """On the folds' own backend (TensorFlow here), and on JAX as in a TPU notebook."""
    if backend == "training":
        _, summary = bundle
    else:
        config = bundle_config(
            small_competition, trained_runs, tmp_path / "kaggle-jax", f"kaggle.backend={backend}"
        )
        summary = kaggle.build(config)
    manifest = json.loads((Path(summary["folder"]) / "dataset" / "kit-bundle.json").read_text())
    runs_on = {"training": "tensorflow"}.get(backend, backend)
    assert manifest["backend"] == runs_on
    python = kaggle_image_python(tmp_path / "venv")
    probe = "import importlib.util as u; print(u.find_spec('competition'), u.find_spec('keras'))"
    found = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert found.stdout.startswith("None ") and "keras" in found.stdout  # kit absent, stack there
    root = fake_kaggle_root(
        tmp_path / "kaggle", Path(summary["folder"]) / "dataset", small_competition
    )
    script = Path(summary["folder"]) / "kernel" / "submit.py"
    env = {**os.environ, "KAGGLE_ROOT": str(root), "PIP_NO_CACHE_DIR": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        offline([str(python), str(script)]), env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Keras backend {runs_on})" in done.stdout
    submission = root / "working" / "submission.csv"
    sample = small_competition.layout.sample_submission
    problems, rows = validate_file(small_competition.task, submission, sample)
    assert problems == [] and rows > 0
    assert "rows, checked against the sample" in done.stdout
    if backend == "training":  # the bundle whose run time was projected
        assert re.search(r"Run time [\d.]+ s; make kaggle projected [\d.]+ s \(ratio [\d.]+\)",
                         done.stdout)  # fmt: skip


@pytest.mark.slow
def test_kernel_runs_both_stages_of_a_2_5d_experiment_offline(
    small_competition, kaggle_python, tmp_path
):
    """2.5D input and the sequence stage in the kernel: the test folder has
    no header index there, so its series and z are read from the headers."""
    from competition.pipeline.train_seq import train_sequence_folds

    runs = tmp_path / "runs"
    config = bundle_config(
        small_competition, runs, tmp_path / "build", "preprocess.neighbors=1",
        "sequence.epochs=1", "sequence.units=8", "experiment=small-25d",
    )  # fmt: skip
    train_folds(config, [0])
    train_sequence_folds(config, [0])
    from dataclasses import replace

    from competition.pipeline.predict import predict_and_submit

    cnn_only = replace(
        config, predict=replace(config.predict, stage=1, submissions_dir=str(tmp_path / "sub"))
    )
    assert predict_and_submit(cnn_only)["stage"] == 1  # 2.5D stacks of the test series
    summary = kaggle.build(config)
    assert "runs/small-25d/fold0/sequence/best.keras" in summary["files"]
    root = fake_kaggle_root(
        tmp_path / "kaggle", Path(summary["folder"]) / "dataset", small_competition
    )
    done = run_kernel(
        kaggle_python, Path(summary["folder"]) / "kernel" / "submit.py", root, tmp_path
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stage 2" in done.stdout
    sample = small_competition.layout.sample_submission
    problems, rows = validate_file(
        small_competition.task, root / "working" / "submission.csv", sample
    )
    assert problems == [] and rows == len(pd.read_csv(sample))


def run_kernel(python: Path, script: Path, root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAGGLE_ROOT": str(root), "PIP_NO_CACHE_DIR": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        offline([str(python), str(script)]), env=env, cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def bundle_and_run_offline(config, python: Path, tmp_path: Path, **kaggle_settings):
    """make kaggle with these kaggle.* settings, then its kernel offline in a
    Kaggle-like root (the bundle and the competition mounted under input/):
    (build summary, the kernel's completed process, working/submission.csv)."""
    from dataclasses import replace

    settings = replace(config.kaggle, username=USER, python=PYTHON, time_batches=0,
                       build_dir=str(tmp_path / "build"), **kaggle_settings)  # fmt: skip
    built = kaggle.build(replace(config, kaggle=settings))
    root = tmp_path / "kaggle"
    dataset = root / "input" / built["dataset"].split("/")[1]
    shutil.copytree(Path(built["folder"]) / "dataset", dataset)
    mount_competition(config.layout.root, root / "input" / config.kaggle.competition, config)
    (root / "working").mkdir()
    done = run_kernel(python, Path(built["folder"]) / "kernel" / "submit.py", root, tmp_path)
    return built, done, root / "working" / "submission.csv"


def mount_competition(source: Path, destination: Path, config) -> None:
    """The competition's files as Kaggle mounts them: the CSVs and the test
    images in their real folders (train images left out: the kernel needs none)."""
    task = config.task
    destination.mkdir(parents=True)
    for name in (task.labels.csv, task.submission.sample, task.images.test_csv):
        if name and (source / name).is_file():
            shutil.copy2(source / name, destination / name)
    (destination / task.images.test_dir).parent.mkdir(parents=True, exist_ok=True)
    if task.in_hdf5:  # the test images are one file
        shutil.copy2(source / task.images.test_dir, destination / task.images.test_dir)
    else:
        shutil.copytree(source / task.images.test_dir, destination / task.images.test_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_each_presets_kernel_finds_its_files_and_submits_offline(
    presets, kaggle_python, name, tmp_path
):
    root, runs = presets(name)
    config = preset_config(
        name, root, f"runs_dir={runs}", f"kaggle.build_dir={tmp_path / 'build'}",
        f"kaggle.username={USER}", f"kaggle.python='{PYTHON}'", "kaggle.time_batches=0",
    )  # fmt: skip
    summary = kaggle.build(config)
    kaggle_root = tmp_path / "kaggle"
    dataset = kaggle_root / "input" / summary["dataset"].split("/")[1]
    shutil.copytree(Path(summary["folder"]) / "dataset", dataset)
    mount_competition(root, kaggle_root / "input" / config.kaggle.competition, config)
    if name == "siim_isic_2020":  # the real download also has test/ (the DICOMs)
        (kaggle_root / "input" / config.kaggle.competition / "test").mkdir()
    (kaggle_root / "working").mkdir()
    script = Path(summary["folder"]) / "kernel" / "submit.py"
    done = run_kernel(kaggle_python, script, kaggle_root, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sample = root / config.task.submission.sample
    problems, rows = validate_file(config.task, kaggle_root / "working" / "submission.csv", sample)
    assert problems == [] and rows == len(pd.read_csv(sample))


def test_kernel_names_what_it_could_not_find(bundle, tmp_path):
    from competition.kaggle.kernel import kernel_config

    _, summary = bundle
    inputs = tmp_path / "input"
    shutil.copytree(Path(summary["folder"]) / "dataset", inputs / "small-kit")
    with pytest.raises(KitError, match="stage_2_sample_submission.csv.*found none"):
        kernel_config(inputs / "small-kit", inputs, tmp_path / "working")


# --- the real kaggle client against a local stand-in server -----------------


@pytest.fixture
def stand_in():
    try:
        server = StandIn(80)
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.1:80 for the stand-in Kaggle server: {exc}")
    with server:
        yield server


def client_env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(home), KAGGLE_API_ENVIRONMENT="LOCALHOST", NO_PROXY="*", **extra)
    return env


def cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "competition", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_make_kaggle_push_uploads_the_dataset_then_the_kernel(
    stand_in, small_competition, trained_runs, tmp_path
):
    env = client_env(tmp_path, KAGGLE_USERNAME=USER, KAGGLE_KEY="not-a-real-key")
    overrides = [
        f"data.root={small_competition.data.root}", f"runs_dir={trained_runs}",
        f"kaggle.build_dir={tmp_path / 'kaggle'}", f"kaggle.python='{PYTHON}'", *TRAINED_WITH,
        "kaggle.time_batches=0",
    ]  # fmt: skip
    args = ["kaggle", "--push", "--config", str(REPO / "configs/small.yaml")]
    done = cli([*args, *(x for o in overrides for x in ("--set", o))], env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (created,) = stand_in.bodies("CreateDataset")
    assert (created["ownerSlug"], created["slug"]) == (USER, "small-kit")
    assert created["licenseName"] == "CC0-1.0" and created["isPrivate"] is True
    uploaded = {stand_in.names[f["token"]]: stand_in.blobs[f["token"]] for f in created["files"]}
    assert set(uploaded) == {"config.yaml", "kit-bundle.json", "runs.zip", "wheels.zip"}
    wheels = zipfile.ZipFile(io.BytesIO(uploaded["wheels.zip"])).namelist()
    assert any(n.startswith("competition-") and n.endswith(".whl") for n in wheels)
    runs = zipfile.ZipFile(io.BytesIO(uploaded["runs.zip"])).namelist()
    assert any(n.endswith("fold0/best.keras") for n in runs)

    (kernel,) = stand_in.bodies("SaveKernel")
    assert kernel["slug"] == f"{USER}/small-submit" and kernel["newTitle"] == "Small submit"
    assert (kernel["language"], kernel["kernelType"]) == ("python", "script")
    assert kernel["datasetDataSources"] == [f"{USER}/small-kit"]
    assert kernel["competitionDataSources"] == ["rsna-intracranial-hemorrhage-detection"]
    assert kernel["enableInternet"] is False and kernel["isPrivate"] is True
    assert kernel["text"] == (tmp_path / "kaggle" / "kernel" / "submit.py").read_text()
    methods = [m for m, _ in stand_in.calls]
    assert methods.index("CreateDataset") < methods.index("SaveKernel")  # dataset first


@pytest.mark.slow
def test_push_without_credentials_is_refused_and_sends_nothing(
    stand_in, small_competition, trained_runs, tmp_path
):
    env = client_env(tmp_path)  # empty HOME, no KAGGLE_* variables
    config = str(REPO / "configs/small.yaml")
    sets = [f"data.root={small_competition.data.root}", f"runs_dir={trained_runs}",
            f"kaggle.build_dir={tmp_path / 'kaggle'}", f"kaggle.username={USER}",
            f"kaggle.python='{PYTHON}'"]  # fmt: skip
    done = cli(
        ["kaggle", "--push", "--config", config, *(x for s in sets for x in ("--set", s))], env
    )
    assert done.returncode == 2 and "No Kaggle credentials" in done.stderr
    assert stand_in.calls == [] and not (tmp_path / "kaggle").exists()  # refused up front


# --- bad input: clear errors, nothing written ---------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["kaggle.username=null"], "No Kaggle user name"),
        (["kaggle.dataset_slug=Bad_Slug"], "kaggle.dataset_slug.*'Bad_Slug'"),
        (["kaggle.kernel_slug=abc"], "kaggle.kernel_slug.*'abc'"),
        (["kaggle.max_dataset_gb=0.000001"], "above kaggle.max_dataset_gb"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(
    small_competition, trained_runs, tmp_path, monkeypatch, overrides, message
):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    build = tmp_path / "kaggle"
    config = bundle_config(small_competition, trained_runs, build, *overrides)
    with pytest.raises(KitError, match=message):
        kaggle.build(config)
    assert not build.exists() and list(tmp_path.iterdir()) == []


def test_no_trained_checkpoint_is_refused(small_competition, tmp_path):
    build = tmp_path / "kaggle"
    config = bundle_config(small_competition, tmp_path / "no-runs", build)
    with pytest.raises(KitError, match="No trained fold"):
        kaggle.build(config)
    assert not build.exists()


def test_user_name_from_the_environment(small_competition, trained_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "from-env")
    config = bundle_config(small_competition, trained_runs, tmp_path, "kaggle.username=null")
    assert kaggle.target(config).dataset_id == "from-env/small-kit"


def test_a_tpu_kernel_runs_on_jax_without_a_gpu(small_competition, tmp_path):
    def tpu_config(*overrides):
        return bundle_config(small_competition, tmp_path, tmp_path / "kaggle", *overrides)

    with pytest.raises(KitError, match="a Kaggle notebook has one accelerator"):
        tpu_config("kaggle.enable_tpu=true")
    with pytest.raises(KitError, match="Set kaggle.backend=jax. Received: kaggle.backend=training"):
        tpu_config("kaggle.enable_tpu=true", "kaggle.enable_gpu=false")
    config = tpu_config("kaggle.enable_tpu=true", "kaggle.enable_gpu=false", "kaggle.backend=jax")
    metadata = kaggle.kernel_metadata(config, kaggle.target(config))
    assert (metadata["enable_tpu"], metadata["enable_gpu"]) == (True, False)
    assert kaggle.kernel_backend(config) == "jax"


def test_the_bundle_carries_the_kernels_projected_time(bundle):
    """install + import + listing + loading + test images x the ensemble's
    seconds per image, each measured; the sum is the projection."""
    _, summary = bundle
    budget = summary["time_budget"]
    for key in ("install_seconds", "import_seconds", "seconds_per_image"):
        assert budget[key] > 0, key
    start = sum(budget[f"{k}_seconds"] for k in ("install", "import", "listing", "load"))
    assert budget["start_seconds"] == pytest.approx(start, abs=0.02)
    assert budget["projected_seconds"] == pytest.approx(
        start + budget["test_images"] * budget["seconds_per_image"], abs=0.2
    )
    assert budget["test_images"] == budget["local_test_images"]
    assert "checkpoints hold" in summary["weights"]


def test_a_projection_over_the_limit_warns_with_the_cuts_and_their_times():
    from competition.kaggle.budget import summary_line

    budget = {"projected_seconds": 40_000.0, "limit_seconds": 32_400.0, "start_seconds": 100.0,
              "test_images": 100_000, "seconds_per_image_used": 0.399, "folds": 5,
              "tta_views": 2, "rate_source": "measured here"}  # fmt: skip
    line = summary_line(budget)
    assert "11.11 h of the 9-hour limit" in line and "warning: that is over 90%" in line
    assert "2 fold(s) (predict.folds): 4.46 h" in line  # 100 s + 1e5 x 0.0399 x 2 x 2
    assert "no TTA (predict.tta: [none]): 5.57 h" in line
    assert "warning" not in summary_line({**budget, "projected_seconds": 1000.0})
    assert summary_line(None) == "Kernel time not projected (kaggle.time_batches: 0)"
