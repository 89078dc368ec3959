"""The kit's command line: `python -m competition <command> [--config FILE]
[--set section.key=value ...]`. TensorFlow is imported only by the commands
that train or predict."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from competition.config import Config, load_config
from competition.errors import KitError
from competition.layout import Layout


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


def cmd_synth(config: Config, args: argparse.Namespace) -> None:
    from competition import synthetic

    root = synthetic.generate(config, workers=args.workers, force=args.force)
    config.save(root / "synthetic.config.yaml")
    print(f"Synthetic competition at {root}")


def cmd_index(config: Config, args: argparse.Namespace) -> None:
    from competition.index import write_index

    layout = Layout.from_config(config)
    write_index(layout, args.workers or config.data.workers)
    config.save(layout.index_csv.with_suffix(".config.yaml"))
    print(f"Wrote {layout.index_csv}")


def cmd_folds(config: Config, args: argparse.Namespace) -> None:
    from competition.folds import write_folds
    from competition.index import read_index
    from competition.labels import read_labels

    layout = Layout.from_config(config)
    write_folds(layout, read_labels(layout.train_csv), read_index(layout), config.folds)
    config.save(layout.folds_csv.with_suffix(".config.yaml"))
    print(f"Wrote {layout.folds_csv}")


def _fold_list(text: str, k: int) -> list[int]:
    if text == "all":
        return list(range(k))
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise KitError(
            f"--fold takes a fold number, a comma list or 'all'. Received: {text!r}"
        ) from None


def cmd_train(config: Config, args: argparse.Namespace) -> None:
    from competition.prepare import ensure_data

    folds = _fold_list(args.fold, config.folds.k)
    ensure_data(config)
    from competition.train import train_folds

    results = train_folds(config, folds, force=args.force)
    for metrics in results:
        ratio = metrics["weighted_log_loss"] / metrics["baseline_weighted_log_loss"]
        print(
            f"fold {metrics['fold']}: validation weighted log loss "
            f"{metrics['weighted_log_loss']:.4f}, prevalence-only baseline "
            f"{metrics['baseline_weighted_log_loss']:.4f} (ratio {ratio:.3f})"
        )


def cmd_gallery(config: Config, args: argparse.Namespace) -> None:
    from competition.gallery import save_gallery

    out = save_gallery(Layout.from_config(config), args.real, args.out, config.preprocess.windows)
    print(f"Wrote {out}")


def cmd_show_config(config: Config, args: argparse.Namespace) -> None:
    print(config.to_yaml(), end="")


COMMANDS: dict[str, tuple[Callable[[Config, argparse.Namespace], None], str]] = {
    "synth": (cmd_synth, "write the synthetic competition (skipped when up to date)"),
    "index": (cmd_index, "scan DICOM headers into <data.root>/index.csv"),
    "folds": (cmd_folds, "patient-grouped stratified folds -> <data.root>/folds.csv"),
    "train": (cmd_train, "train folds: runs/<experiment>/fold<k>/ (sets up the data first)"),
    "gallery": (cmd_gallery, "a PNG of windowed training slices, one per subtype"),
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
    parsers["train"].add_argument("--fold", default="0", help="a fold, a comma list, or all")
    parsers["train"].add_argument(
        "--force", action="store_true", help="train again even if the fold has finished"
    )
    for name in ("synth", "index"):
        parsers[name].add_argument(
            "--workers",
            type=int,
            default=0,
            help="processes (default: data.workers; 0 = all cores)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    args = build_parser().parse_args(argv)
    handler, _ = COMMANDS[args.command]
    try:
        handler(load_config(args.config, args.overrides), args)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
