"""The kit's command line: `python -m competition <command> [--config FILE]
[--set section.key=value ...]`. TensorFlow is imported only by the commands
that train or predict (and the benchmark)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from competition.backend import check as check_backend
from competition.backend import isolate
from competition.config import Config, check_fold, load_config
from competition.errors import ConfigError, KitError


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", help="config file (default: configs/default.yaml)"
    )
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set train.epochs=3 (repeatable)",
    )
    return common


def synthetic_variant(config_path: str | None) -> str:
    """The config that writes a preset's stand-in (configs/synthetic/<preset>.yaml;
    the RSNA ICH one is the default)."""
    name = Path(config_path or "").stem
    candidate = Path(config_path or "").parent / "synthetic" / f"{name}.yaml"
    if candidate.is_file():
        return str(candidate)
    return "configs/default.yaml (RSNA ICH) or configs/synthetic/<preset>.yaml"


def cmd_synth(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.prepare import write_synthetic

    if not config.synth.generate:
        raise KitError(
            f"This config reads a real download at {config.data.root} (synth.generate: false): "
            "make data would write a synthetic competition there. The config that writes the "
            f"stand-in: {synthetic_variant(args.config)} (make data CONFIG=...)."
        )
    root = write_synthetic(config, args.workers, args.force)
    print(f"Synthetic competition at {root}")


def cmd_index(config: Config, args: argparse.Namespace) -> None:
    from competition.data.index import write_index
    from competition.pipeline.prepare import ensure_synthetic

    ensure_synthetic(config)
    layout = config.layout
    write_index(layout, args.workers or config.data.workers)
    config.save(layout.index_csv.with_suffix(".config.yaml"))
    print(f"Wrote {layout.index_csv}")


def cmd_folds(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.prepare import ensure_index, write_folds_for

    layout = ensure_index(config)
    write_folds_for(config, layout)
    print(f"Wrote {layout.folds_csv}")


def cmd_cache(config: Config, args: argparse.Namespace) -> None:
    from competition.data.cache.build import build, verify
    from competition.pipeline.prepare import ensure_index

    ensure_index(config)
    splits = ["train", "test"] if args.split == "all" else [args.split]
    workers = args.workers or config.data.workers
    for result in build(config.cache, splits, workers):
        folder = Path(result["folder"])
        if args.verify and result["status"] == "up to date":
            bad = verify(folder)
            if bad:
                print(f"{len(bad)} corrupt entries in {folder}; rebuilding them")
                result = build(config.cache, [folder.name], workers)[0]
        rate = (
            f" at {result['images_per_second']} images/s" if "images_per_second" in result else ""
        )
        print(
            f"Cache {folder.name}: {result['images']} images ({result['unreadable']} unreadable, "
            f"{result['bytes'] / 2**20:.0f} MiB) {result['status']}{rate}: {folder}"
        )


def _devtool(name: str):
    """A developer tool (not shipped in the Kaggle bundle)."""
    import importlib

    try:
        return importlib.import_module(f"competition.devtools.{name}")
    except ModuleNotFoundError:
        raise KitError(
            f"{name} is a developer tool of the kit's checkout; this installation does not "
            "have it (the Kaggle bundle leaves the developer tools out)."
        ) from None


def cmd_bench(config: Config, args: argparse.Namespace) -> None:
    bench = _devtool("bench")
    if args.readers:
        print(json.dumps(bench.reader_rate(config), indent=2))
        return
    report = bench.run(config, args.config, args.overrides, args.quick, args.out)
    print(bench.table(report))
    print(f"Wrote {args.out} ({report['machine']['cores']} cores, {report['machine']['cpu']})")


def cmd_bench_gpu(config: Config, args: argparse.Namespace) -> None:
    accelerator = _devtool("accelerator")
    report = accelerator.run(args.config, args.overrides, _bench_gpu_options(args), args.out)
    print(accelerator.table(report))
    print(f"Wrote {args.out}")


def _bench_gpu_options(args: argparse.Namespace):
    from dataclasses import fields

    from competition.backend import BACKENDS
    from competition.devtools.accelerator.report import installed
    from competition.devtools.accelerator.setups import SMALL, Options

    given = {f.name: getattr(args, f.name, None) for f in fields(Options)}
    given = {k: v for k, v in given.items() if v is not None}
    if "backends" in given:
        given["backends"] = tuple(given["backends"].split(","))
        unknown = sorted(set(given["backends"]) - set(BACKENDS))
        if unknown:
            raise ConfigError(
                f"bench-gpu --backends takes a comma list of {', '.join(BACKENDS)}. "
                f"Received: {args.backends!r}"
            )
    if "preset_overrides" in given:
        given["preset_overrides"] = tuple(given["preset_overrides"])
    if given.get("preset") == "none":
        given["preset"] = None
    return Options(**{"backends": installed(), **(SMALL if args.small else {}), **given})


def cmd_bench_stages(config: Config, args: argparse.Namespace) -> None:
    stages = _devtool("stages")
    report = stages.run(
        args.config, args.overrides, _fold_list(args.fold, config.folds.k), args.out, args.force
    )
    print(stages.table(report))
    print(f"Wrote {args.out}")


def cmd_bench_scale(config: Config, args: argparse.Namespace) -> None:
    scale = _devtool("scale")
    sizes = [int(size) for size in args.sizes.split(",")]
    workers = args.workers or config.data.workers
    from competition.workers import worker_count

    isic = [int(size) for size in args.isic_sizes.split(",")] if args.isic_sizes else None
    report = scale.run(
        sizes, args.pixel_images, worker_count(workers), args.out, args.keep, args.kernel_config,
        isic,
    )  # fmt: skip
    print(scale.table(report))
    print(f"Wrote {args.out}")


def _fold_list(text: str, k: int) -> list[int]:
    """Checked before the work starts (data set-up can take minutes)."""
    if text == "all":
        return list(range(k))
    try:
        folds = [int(part) for part in text.split(",")]
    except ValueError:
        raise KitError(
            f"--fold takes a fold number, a comma list or 'all'. Received: {text!r}"
        ) from None
    return [check_fold(fold, k) for fold in folds]


def cmd_train(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.prepare import ensure_data

    folds = _fold_list(args.fold, config.folds.k)
    ensure_data(config)
    from competition.evaluation.report import headline
    from competition.pipeline.train import train_folds

    _print_devices()
    results = train_folds(config, folds, force=args.force)
    for metrics in results:
        print(f"fold {metrics['fold']}: validation {headline(metrics)}")
    if len(folds) > 1:
        _print_cv(config)
    _print_data_report(config)


def cmd_train_seq(config: Config, args: argparse.Namespace) -> None:
    folds = _fold_list(args.fold, config.folds.k)
    from competition.evaluation.report import headline
    from competition.pipeline.train_seq import train_sequence_folds

    _print_devices()
    for metrics in train_sequence_folds(config, folds, force=args.force):
        print(
            f"fold {metrics['fold']}: sequence stage {headline(metrics)} "
            f"(stage 1: {metrics['stage1_score']:.4f})"
        )
    if len(folds) > 1:
        _print_cv(config)


def _print_devices() -> None:
    from competition.training.devices import describe

    print(f"Running on {describe()}", flush=True)


def _print_data_report(config: Config) -> None:
    from competition.evaluation.data_report import write_report

    write_report(config.cache, config.runs, echo=True)


def _print_cv(config: Config) -> None:
    from competition.evaluation.cv import cv_report, markdown

    report = cv_report(config.task, config.runs)
    print(markdown(report), end="")
    print(f"Wrote {config.runs.root / 'cv.json'} (+ cv.md, roc.png)")


def cmd_predict(config: Config, args: argparse.Namespace) -> None:
    if config.synth.generate:
        from competition.pipeline.prepare import ensure_synthetic

        ensure_synthetic(config)
    from competition.evaluation.report import headline
    from competition.pipeline.predict import predict_and_submit

    _print_devices()
    folds = _fold_list(args.folds, config.folds.k) if args.folds else None
    summary = predict_and_submit(config, folds, force=args.force)
    noun = config.task.sample_noun
    print(
        f"Predicted {summary['images']} test {noun} with folds {summary['folds']} x "
        f"{len(summary['tta'])} TTA views ({summary['ensemble']} ensemble), stage "
        f"{summary['stage']}: {summary['images_per_second']} {noun}/s"
    )
    if summary["unreadable"]:
        print(
            f"{len(summary['unreadable'])} unreadable test {noun} were given the training mean "
            "(listed in the data report below)"
        )
    score = summary["test_score"]
    if score:
        print(f"Score on {score['labels']} ({score['images']} {noun}): {headline(score)}")
    print(f"Wrote {summary['test_preds']}")
    print(f"Wrote {summary['submission']} ({summary['rows']} rows, checked) and submission.csv")
    _print_cv(config)
    _print_data_report(config)


def _resources(args: argparse.Namespace):
    from competition.cluster.train import Resources

    return Resources(args.cpus_per_fold, args.gpus_per_fold, args.max_retries)


def cmd_cluster_train(config: Config, args: argparse.Namespace) -> None:
    from competition.cluster.train import cluster_train, sweep_table

    folds = _fold_list(args.folds, config.folds.k)
    summary = cluster_train(
        args.config, args.overrides, args.address, folds, args.sweep, _resources(args)
    )
    print(
        f"Trained {len(summary['trained'])} fold(s) on the cluster in {summary['seconds']} s "
        f"({len(folds)} fold(s) x {len(summary['points'])} point(s) asked)"
    )
    for point in summary["points"]:
        if len(folds) > 1:
            _print_cv(point.config)
    if args.sweep:
        print(sweep_table(summary["points"]))


def cmd_cluster_predict(config: Config, args: argparse.Namespace) -> None:
    from competition.cluster.predict import cluster_predict

    folds = _fold_list(args.folds, config.folds.k) if args.folds else None
    summary = cluster_predict(
        config, args.address, args.shards, _resources(args), args.actors, folds, args.force
    )
    print(
        f"Predicted {summary['images']} test images in {summary['shards']} shards "
        f"({summary['shards_predicted']} this run) with folds {summary['folds']} x "
        f"{len(summary['tta'])} TTA views"
    )
    print(f"Wrote {summary['test_preds']}")
    print(f"Wrote {summary['submission']} ({summary['rows']} rows, checked) and submission.csv")


def cmd_validate(config: Config, args: argparse.Namespace) -> int:
    """Exit 0: the file passes; 1: it fails the check, or is missing or not a
    readable CSV; 2: the command itself cannot run (a bad config, a missing
    sample submission)."""
    from competition.inference import submission as sub

    sample = args.sample or config.layout.sample_submission
    expected = sub.read_sample(config.task, sample)  # missing: the command's error (exit 2)
    try:
        frame = sub.read_submission(args.file)
    except sub.SubmissionError as exc:
        print(f"{args.file}: {exc}")
        return 1
    problems, rows = sub.check_submission(config.task, frame, expected), len(frame)
    for problem in problems:
        print(f"{args.file}: {problem}")
    if problems:
        return 1
    print(f"ok: {rows} rows match {sample}")
    return 0


def cmd_kaggle(config: Config, args: argparse.Namespace) -> int:
    from competition.kaggle import budget, bundle, push

    if args.push:  # before minutes of bundling
        push.require_credentials()
    summary = bundle.build(config)
    print(
        f"Wrote {summary['folder']}/dataset ({summary['dataset']}: "
        f"{len(summary['files'])} fold files, wheels {', '.join(summary['wheels'])}; "
        f"{summary['bytes'] / 2**20:.1f} MiB) and {summary['folder']}/kernel ({summary['kernel']})"
    )
    print(f"Weights: {summary['weights']}")
    print(budget.summary_line(summary["time_budget"]))
    if args.push:
        return push.push(Path(summary["folder"]), summary["dataset"])
    print("Upload with:")
    for command in summary["commands"]:
        print(f"  {command}")
    return 0


def cmd_backbones(config: Config, args: argparse.Namespace) -> None:
    names = args.names.split(",") if args.names else None
    _devtool("backbones").run(names, timed=not args.no_time, out=args.out)


def cmd_weights(config: Config, args: argparse.Namespace) -> None:
    from competition.training.weights_store import fetch

    folder = args.dir or config.model.weights_dir
    print(f"Wrote {fetch(args.backbone or config.model.backbone, folder)} (checksum in "
          f"{folder}/checksums.json)")  # fmt: skip


def cmd_errors(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.errors import analyse

    report = analyse(config, check_fold(int(args.fold), config.folds.k), args.k)
    for head, found in report["calibration"].items():
        print(f"{head}: expected calibration error {found['ece']:.4f} over {found['count']} labels")
    for key in ("gallery", "reliability"):
        if key in report:
            print(f"Wrote {report[key]}")
    if "gallery" not in report:
        print("No image gallery: a series- or study-level task's unit is a stack of slices.")


def cmd_runs(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline import experiments

    for assignment in args.lb or []:
        print(f"Wrote {experiments.record_leaderboard(Path(config.runs_dir), assignment)}")
    print(experiments.runs_table(Path(config.runs_dir)))


def _experiment_names(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise KitError("Name the experiments to combine: EXPERIMENTS=a,b (--experiments a,b)")
    return names


def cmd_blend(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.blend import blend_experiments, markdown
    from competition.pipeline.runs import experiment_config

    names = _experiment_names(args.experiments)
    config = experiment_config(names[0], args.config, args.overrides)
    report = blend_experiments(config, names, args.name)
    print(markdown(report), end="")
    print(f"Wrote {report['submission']} ({report['rows']} rows, checked)")


def cmd_stack(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.prepare import ensure_data
    from competition.pipeline.stack import markdown, stack_stage

    ensure_data(config)
    report = stack_stage(config, force=args.force)
    print(markdown(report), end="")
    print(f"Wrote {report['submission']} ({report['rows']} rows, checked)")


def cmd_localise(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.localise import localise_stage, markdown

    report = localise_stage(config, _folds_arg(args.fold))
    print(markdown(report), end="")


def cmd_classify(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.classify import classify_stage, markdown

    print(markdown(classify_stage(config)), end="")


def cmd_two_stage(config: Config, args: argparse.Namespace) -> None:
    cmd_localise(config, args)
    cmd_classify(config, args)


def cmd_whole_series(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.classify import markdown, whole_series_stage

    print(markdown(whole_series_stage(config)), end="")


def _folds_arg(text: str | None) -> list[int] | None:
    return None if text in (None, "", "all") else [int(f) for f in text.split(",")]


def cmd_report(config: Config, args: argparse.Namespace) -> None:
    _print_cv(config)


def cmd_data_report(config: Config, args: argparse.Namespace) -> None:
    _print_data_report(config)


def cmd_gallery(config: Config, args: argparse.Namespace) -> None:
    gallery = _devtool("gallery")
    if config.synth.generate:
        from competition.pipeline.prepare import ensure_synthetic

        ensure_synthetic(config)
    print(f"Wrote {gallery.save_gallery(config, args.real, args.out)}")


def cmd_augment_preview(config: Config, args: argparse.Namespace) -> None:
    from competition.pipeline.prepare import ensure_index

    preview = _devtool("preview")
    ensure_index(config)  # the synthetic data first; 2.5D stacks follow the index
    out = args.out or config.runs.root / "augment_preview.png"
    print(f"Wrote {preview.save_preview(config, out, args.draws, args.seed, args.images)}")


def cmd_show_config(config: Config, args: argparse.Namespace) -> None:
    print(config.to_yaml(), end="")


COMMANDS: dict[str, tuple[Callable[[Config, argparse.Namespace], int | None], str]] = {
    "synth": (cmd_synth, "write the synthetic competition (skipped when up to date)"),
    "index": (cmd_index, "scan the image headers into <data.root>/index.csv"),
    "folds": (cmd_folds, "grouped, stratified folds -> <data.root>/folds.csv"),
    "cache": (
        cmd_cache,
        "decode, window and resize every image once into a cache (a memory map or shards)",
    ),
    "train": (cmd_train, "train folds: runs/<experiment>/fold<k>/ (sets up the data first)"),
    "train-seq": (
        cmd_train_seq,
        "train the sequence stage of folds over their CNN's features: fold<k>/sequence/",
    ),
    "predict": (
        cmd_predict,
        "fold ensemble + TTA on the test images -> test_preds.csv and a checked submission",
    ),
    "cluster-train": (
        cmd_cluster_train,
        "train folds (and a sweep of settings) as Ray tasks on a cluster sharing the folders",
    ),
    "cluster-predict": (
        cmd_cluster_predict,
        "predict the test set in shards, one Ray actor per GPU -> the same submission as predict",
    ),
    "validate": (cmd_validate, "check a submission file against the sample submission"),
    "blend": (
        cmd_blend,
        "blend experiments on their out-of-fold predictions (honest CV) -> runs/<name>/",
    ),
    "stack": (
        cmd_stack,
        "gradient boosting over metadata, patient-relative features and experiments' "
        "out-of-fold predictions -> runs/<experiment>/<stack.name>/",
    ),
    "localise": (
        cmd_localise,
        "stage 1 of localise-then-classify: keypoint localisers per series kind and fold, "
        "out-of-fold and test points, their accuracy -> runs/<experiment>/localise/",
    ),
    "classify": (
        cmd_classify,
        "stage 2: crops around the points, the crop classifiers, CV and the checked submission",
    ),
    "two-stage": (cmd_two_stage, "localise, then classify"),
    "whole-series": (
        cmd_whole_series,
        "the baseline on the same folds: the series model over whole series of each kind",
    ),
    "report": (cmd_report, "cross-validation report over the out-of-fold predictions"),
    "data-report": (
        cmd_data_report,
        "images left out at each stage and why -> runs/<experiment>/data_report.json",
    ),
    "kaggle": (
        cmd_kaggle,
        "bundle the kit and trained folds as a Kaggle dataset + an offline submission kernel",
    ),
    "bench": (cmd_bench, "input pipeline, fit, predict, cache and memory vs their peers"),
    "bench-gpu": (
        cmd_bench_gpu,
        "fit and predict on the accelerator fed by the kit vs in memory, per backend "
        "-> bench-gpu.json",
    ),
    "bench-stages": (
        cmd_bench_stages,
        "2D, 2.5D, and each + the sequence stage, on the same folds -> stages.json",
    ),
    "bench-scale": (
        cmd_bench_scale,
        "each data stage at several sizes, projected to the real competition -> bench-scale.json",
    ),
    "errors": (
        cmd_errors,
        "the worst validation images per output with Grad-CAM, and reliability diagrams",
    ),
    "runs": (
        cmd_runs,
        "every experiment under runs/ in one table (CV per stage and fold, settings, LB)",
    ),
    "backbones": (
        cmd_backbones,
        "every backbone with its parameters, input range and a CPU training step at 128 px",
    ),
    "weights": (
        cmd_weights,
        "fetch a backbone's ImageNet (or KerasHub preset) weights into model.weights_dir",
    ),
    "gallery": (cmd_gallery, "a PNG of windowed training images, one per label column"),
    "augment-preview": (
        cmd_augment_preview,
        "a PNG of training images as the model sees them after the configured augmentation",
    ),
    "show-config": (cmd_show_config, "print the resolved config"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m competition", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    parsers = {
        name: sub.add_parser(name, parents=[common], help=text, description=text)
        for name, (_, text) in COMMANDS.items()
    }
    parsers["synth"].add_argument(
        "--force", action="store_true", help="rewrite even when the dataset is up to date"
    )
    parsers["gallery"].add_argument("--real", type=Path, help="also show slices from this folder")
    parsers["gallery"].add_argument("--out", type=Path, default=Path("docs/gallery.png"))
    preview = parsers["augment-preview"]
    preview.add_argument("--out", type=Path, help="default runs/<experiment>/augment_preview.png")
    preview.add_argument("--draws", type=int, default=4, help="augmented copies of each image")
    preview.add_argument("--seed", type=int, default=0, help="the draws' seed")
    preview.add_argument("--images", type=int, default=5, help="images shown (rows)")
    for name in ("train", "train-seq"):
        parsers[name].add_argument("--fold", default="0", help="a fold, a comma list, or all")
        parsers[name].add_argument(
            "--force", action="store_true", help="train again even if the fold has finished"
        )
    parsers["predict"].add_argument(
        "--folds", help="folds to ensemble, e.g. 0,1 (default: predict.folds, else all trained)"
    )
    parsers["predict"].add_argument(
        "--force",
        action="store_true",
        help="use the folds even when they were trained from other inputs than the config's",
    )
    for name in ("cluster-train", "cluster-predict"):
        cluster = parsers[name]
        cluster.add_argument(
            "--address", default="auto", help="the Ray cluster: auto, or the head's HOST:PORT"
        )
        cluster.add_argument(
            "--gpus-per-fold", type=float, default=1, help="GPUs per task or actor (0: CPU only)"
        )
        cluster.add_argument("--cpus-per-fold", type=float, default=1, help="CPUs per task")
        cluster.add_argument(
            "--max-retries", type=int, default=3, help="retries of a task whose process died"
        )
    parsers["cluster-train"].add_argument(
        "--folds", default="all", help="a fold, a comma list, or all"
    )
    parsers["cluster-train"].add_argument(
        "--sweep", type=Path, help="a YAML file of config overrides (grid: and/or points:)"
    )
    parsers["cluster-predict"].add_argument(
        "--shards", type=int, default=8, help="pieces of the test set (each written on its own)"
    )
    parsers["cluster-predict"].add_argument(
        "--actors", type=int, default=0, help="predictors (default: one per GPU of the cluster)"
    )
    parsers["cluster-predict"].add_argument(
        "--folds", help="folds to ensemble (default: predict.folds, else all trained)"
    )
    parsers["cluster-predict"].add_argument(
        "--force", action="store_true", help="use folds trained from other inputs"
    )
    for name in ("predict", "report", "data-report", "kaggle", "validate", "cluster-predict",
                 "errors"):  # fmt: skip
        parsers[name].add_argument(
            "--experiment",
            metavar="NAME",
            help="take the config the experiment's folds were trained with (runs/NAME/fold*/)",
        )
    parsers["validate"].add_argument("file", type=Path, help="the submission CSV to check")
    parsers["validate"].add_argument(
        "--sample", type=Path, help="sample submission (default: the config's)"
    )
    parsers["kaggle"].add_argument(
        "--push", action="store_true", help="then upload both with the kaggle client"
    )
    parsers["bench"].add_argument("--quick", action="store_true", help="a small smoke run")
    parsers["bench"].add_argument(
        "--readers", action="store_true", help="only: the config's reader, files -> model input"
    )
    parsers["bench"].add_argument("--out", type=Path, default=Path("bench.json"))
    _bench_gpu_arguments(parsers["bench-gpu"])
    parsers["bench-stages"].add_argument("--fold", default="0", help="a fold, a comma list, or all")
    parsers["bench-stages"].add_argument("--out", type=Path, default=Path("stages.json"))
    parsers["bench-stages"].add_argument(
        "--force", action="store_true", help="train every variant again"
    )
    parsers["bench-scale"].add_argument(
        "--sizes", default="5000,20000,80000", help="train slices of each synthetic competition"
    )
    parsers["bench-scale"].add_argument(
        "--pixel-images", type=int, default=1500, help="512 px slices for the per-image costs"
    )
    parsers["bench-scale"].add_argument("--out", type=Path, default=Path("bench-scale.json"))
    parsers["bench-scale"].add_argument(
        "--kernel-config",
        type=Path,
        default=Path("configs/rsna_ich.yaml"),
        help="the preset whose ensemble the kernel's rate is measured with",
    )
    parsers["bench-scale"].add_argument(
        "--isic-sizes",
        default="2000,6000",
        help="train lesions of each ISIC 2024 stand-in (HDF5), projected to 401,059; '' skips",
    )
    parsers["bench-scale"].add_argument(
        "--keep", type=Path, help="write the competitions here and keep them (default: a temp dir)"
    )
    parsers["errors"].add_argument("--fold", default="0", help="the fold whose images are shown")
    parsers["errors"].add_argument("--k", type=int, default=4, help="worst images per output")
    parsers["runs"].add_argument(
        "--lb", action="append", metavar="EXPERIMENT=SCORE", help="record a public LB score"
    )
    parsers["stack"].add_argument("--force", action="store_true", help="train every booster again")
    for name in ("localise", "two-stage"):
        parsers[name].add_argument(
            "--fold", help="folds to localise: a comma list or all (default)"
        )
    parsers["blend"].add_argument("--experiments", help="a comma list of trained experiments")
    parsers["blend"].add_argument("--name", help="the blend's folder (default blend-<a>-<b>...)")
    parsers["backbones"].add_argument("--names", help="a comma list (default: all)")
    parsers["backbones"].add_argument("--no-time", action="store_true", help="skip the step")
    parsers["backbones"].add_argument("--out", type=Path, help="also write the rows as JSON")
    parsers["weights"].add_argument("--backbone", help="default: model.backbone")
    parsers["weights"].add_argument("--dir", help="default: model.weights_dir")
    parsers["cache"].add_argument("--split", choices=["train", "test", "all"], default="all")
    parsers["cache"].add_argument(
        "--verify", action="store_true", help="re-check every entry of a finished cache"
    )
    for name in ("synth", "index", "cache", "bench-scale"):
        parsers[name].add_argument(
            "--workers",
            type=int,
            default=0,
            help="processes (default: data.workers; 0 = all cores)",
        )
    return parser


def _bench_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--backends", help="comma list (default: every installed one of tensorflow, jax, torch)")
    add("--backbone", help="the headline setup's backbone (default efficientnet_b0)")
    add("--image-size", type=int, help="its image size (default 256)")
    add("--batch-size", type=int, help="its batch, for fit and predict (default 128)")
    add("--precision", help="its train.mixed_precision (default mixed_bfloat16)")
    add("--preset", help="a preset measured at its own settings too (default rsna_ich; none)")
    add("--preset-set", dest="preset_overrides", action="append", metavar="KEY=VALUE",
        help="an override of the preset's settings (repeatable)")  # fmt: skip
    add("--images", type=int, help="training images the generator cycles through (1024)")
    add("--steps", type=int, help="steps of each timed fit epoch (32)")
    add("--rounds", type=int, help="timed runs of each feed, the fastest counts (2)")
    add("--small", action="store_true", help="sized for a CPU: 64 px, batch 16, 256 images")
    add("--folder", type=Path, help="the stand-ins and their caches (build/bench-gpu)")
    add("--out", type=Path, default=Path("bench-gpu.json"))


def _config(args: argparse.Namespace) -> Config:
    """The command's config: --config and --set, or, with --experiment, the
    experiment's own (its folds' saved config) with --set applied."""
    if getattr(args, "experiment", None):
        from competition.pipeline.runs import experiment_config

        return experiment_config(args.experiment, args.config, args.overrides)
    return load_config(args.config, args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    args = build_parser().parse_args(argv)
    handler, _ = COMMANDS[args.command]
    try:
        check_backend()
        isolate()
        return handler(_config(args), args) or 0
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
