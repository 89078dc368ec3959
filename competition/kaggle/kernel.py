"""What the Kaggle submission kernel runs once the kit is installed: find the
competition's files under the input folder by the task's names (not by a
fixed layout: Kaggle has mounted inputs at different depths over the years),
predict with the bundled folds, write and validate working/submission.csv;
or, in the evaluation-API form (kaggle.form), hand predict(series_path) to
the inference server the competition ships."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

from competition.backend import check, chosen, isolate
from competition.config import Config, load_config
from competition.errors import KitError


def _listing(inputs: Path) -> str:
    shown = sorted(str(p.relative_to(inputs)) for p in inputs.glob("*/*"))[:20]
    return "\n  ".join(shown) or "(empty)"


def _outside(paths, bundle: Path) -> list[Path]:
    return sorted(p for p in paths if bundle not in p.parents)


def _only(found: list[Path], what: str, inputs: Path) -> Path:
    if len(found) != 1:
        listed = "none" if not found else ", ".join(map(str, found))
        raise KitError(
            f"Expected one {what} under {inputs}; found {listed}. Inputs:\n  {_listing(inputs)}"
        )
    return found[0]


def find_competition_file(inputs: Path, bundle: Path, name: str, pattern: str) -> Path:
    """The file called `name` under inputs (else the only match of `pattern`)."""
    found = _outside(inputs.rglob(name), bundle) or _outside(inputs.rglob(pattern), bundle)
    found = [p for p in found if p.is_file()]
    return _only(found, f"competition file {name!r} (or {pattern!r})", inputs)


def find_test_dir(inputs: Path, bundle: Path, name: str, suffix: str) -> Path:
    """The test images' folder: the one whose path ends with `name` (all its
    parts: SIIM's download has both test/ and jpeg/test/), else the one folder
    with 'test' in its name holding files ending in `suffix`."""
    parts = Path(name).parts
    named = [
        p
        for p in _outside(inputs.rglob(parts[-1]), bundle)
        if p.is_dir() and p.parts[-len(parts) :] == parts
    ]
    if not named:
        named = [
            p
            for p in _outside(inputs.rglob("*test*"), bundle)
            if p.is_dir() and next(p.rglob(f"*{suffix}"), None) is not None
        ]
    return _only(named, f"test image folder {name!r}", inputs)


def link_folds(bundle: Path, runs: Path, experiment: str) -> None:
    """runs/<experiment>/fold<k>/... -> the bundle's read-only fold files,
    one link per file in folders of their own: prediction writes next to
    them (test_preds.csv, the sequence stage's test features)."""
    source = bundle / "runs" / experiment
    for file in sorted(source.rglob("*")):
        if not file.is_file():
            continue
        link = runs / experiment / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(file.resolve())


def kernel_config(bundle: Path, inputs: Path, working: Path, path: Path | None = None) -> Config:
    """The bundled config (`path`: one experiment's of several), pointed at
    Kaggle's folders (data.root stays as it was: its label CSV is not there,
    so no data fingerprint is compared)."""
    config = load_config(path or bundle / "config.yaml")
    task = config.task
    if config.kaggle.form == "evaluation_api":  # the server brings the series and the submission
        return replace(
            config,
            runs_dir=str(working / "runs"),
            data=replace(config.data, source="files", cache_dir=str(working / "cache")),
            synth=replace(config.synth, generate=False),
        )
    sample = find_competition_file(
        inputs, bundle, Path(task.submission.sample).name, "*sample_submission*.csv"
    )
    if task.in_hdf5:  # the test images are one HDF5 file
        test_dir = find_competition_file(inputs, bundle, Path(task.images.test_dir).name, "*.hdf5")
    else:
        suffix = Path(task.images.path).suffix
        test_dir = find_test_dir(inputs, bundle, task.images.test_dir, suffix)
    images = replace(task.images, test_dir=str(test_dir))
    if task.images.test_list == "csv":
        test_csv = find_competition_file(
            inputs, bundle, Path(task.images.test_csv).name, "test.csv"
        )
        images = replace(images, test_csv=str(test_csv))
    task = replace(task, images=images, submission=replace(task.submission, sample=str(sample)))
    return replace(
        config,
        task=task,
        runs_dir=str(working / "runs"),
        data=replace(config.data, source="files", cache_dir=str(working / "cache")),
        synth=replace(config.synth, generate=False),
        predict=replace(config.predict, submissions_dir=str(working)),
    )


def run(bundle: Path, inputs: Path, working: Path) -> int:
    from competition.pipeline.predict import predict_and_submit

    manifest = json.loads((bundle / "kit-bundle.json").read_text())
    check()
    isolate()
    config = kernel_config(bundle, inputs, working)
    print(
        f"bundle {bundle} ({manifest['dataset']}, experiment {config.experiment}, "
        f"Keras backend {chosen()})"
    )
    link_folds(bundle, Path(config.runs_dir), config.experiment)
    if config.kaggle.form == "evaluation_api":
        return serve(config, inputs)
    print(f"test images {config.task.images.test_dir}; sample {config.task.submission.sample}")
    if manifest.get("submit", "experiment") != "experiment":
        return run_second_level(bundle, manifest, config, inputs, working)
    summary = predict_and_submit(config)
    for image_id, reason in summary["unreadable"].items():
        print(f"unreadable test image {image_id}: {reason} (given the training mean)")
    return finish(config, working, manifest, (
        f"stage {summary['stage']}, folds {summary['folds']}, "
        f"{summary['images_per_second']} images/s"
    ))  # fmt: skip


def finish(config: Config, working: Path, manifest: dict, what: str) -> int:
    """working/submission.csv checked against the sample (1: it is not
    what Kaggle scores), then the run time beside its projection."""
    from competition.inference.submission import LATEST, validate_file

    problems, rows = validate_file(config.task, working / LATEST, config.task.submission.sample)
    for problem in problems:
        print(f"{working / LATEST}: {problem}")
    if problems:
        return 1
    print(f"Wrote {working / LATEST}: {rows} rows, checked against the sample; {what}")
    print(run_time_line(manifest.get("time_budget")))
    return 0


def run_second_level(bundle: Path, manifest: dict, config: Config, inputs: Path,
                     working: Path) -> int:  # fmt: skip
    """Each bundled experiment's test predictions, then the stack or the blend
    over them into working/submission.csv, checked."""
    from competition.kaggle import levels

    tests = levels.predict_experiments(
        bundle, manifest["experiments"],
        lambda path: kernel_config(bundle, inputs, working, path), link_folds, working,
    )  # fmt: skip
    path = levels.submit_second_level(config, bundle, tests)
    over = manifest["experiments"] or "the metadata alone"
    return finish(config, working, manifest, f"{manifest['submit']} over {over} ({path.name})")


def run_time_line(budget: dict | None) -> str:
    """The kernel's run time so far (from the script's start) beside make kaggle's projection."""
    started = os.environ.get("KIT_KERNEL_STARTED")
    if not started:
        return "Run time: not measured (KIT_KERNEL_STARTED unset)"
    took = time.time() - float(started)
    if not budget:
        return f"Run time {took:.1f} s"
    projected = budget["projected_seconds"]
    return (
        f"Run time {took:.1f} s; make kaggle projected {projected:.1f} s "
        f"(ratio {took / max(projected, 1e-9):.2f})"
    )


def find_server_package(inputs: Path, package: str) -> Path:
    """The folder holding the competition's server package (`kaggle_evaluation/`),
    looked for a few levels down only: the inputs hold millions of images."""
    for depth in range(1, 4):
        found = [p for p in inputs.glob("/".join(["*"] * depth + [package])) if p.is_dir()]
        if found:
            return found[0].parent
    raise KitError(
        f"The competition's inference server package {package}/ is not under {inputs} "
        f"(kaggle.inference_server). Attach the competition to the notebook. Found: "
        f"{_listing(inputs)}"
    )


def serve(config: Config, inputs: Path) -> int:
    """predict(series_path) handed to the competition's inference server:
    served on Kaggle's rerun, through its local gateway otherwise; then the
    seconds per series against the time limit."""
    import importlib
    import os
    import sys

    from competition.pipeline.serve import SeriesPredictor

    module_name, class_name = config.kaggle.inference_server.rsplit(".", 1)
    sys.path.insert(0, str(find_server_package(inputs, module_name.split(".")[0])))
    predictor = SeriesPredictor(config)
    server = getattr(importlib.import_module(module_name), class_name)(predictor)
    print(f"serving predict(series_path) to {config.kaggle.inference_server}")
    if os.getenv("KAGGLE_IS_COMPETITION_RERUN"):
        server.serve()
    else:
        server.run_local_gateway()
    print(predictor.report())
    return 0
