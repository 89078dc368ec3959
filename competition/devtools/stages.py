"""`make bench-stages`: the winners' recipe measured on one config's
competition (the default synthetic one), in one run on the same folds:
2D, 2.5D, 2D + sequence, 2.5D + sequence. Each variant is its own
experiment (`<experiment>-2d`, `<experiment>-2.5d`), so finished folds are
reused with the times they recorded (`--force` trains them again). Prints
a table, writes stages.json."""

from __future__ import annotations

import json
from pathlib import Path

from competition.config import load_config
from competition.fileio import write_text_atomic

VARIANTS = {"2d": ["preprocess.neighbors=0"], "2.5d": ["preprocess.neighbors=1"]}


def _variant(config_path, overrides: list[str], name: str):
    base = load_config(config_path, overrides)
    return load_config(
        config_path, [*overrides, *VARIANTS[name], f"experiment={base.experiment}-{name}"]
    )


def run(
    config_path, overrides: list[str], folds: list[int], out: Path, force: bool = False
) -> dict:
    import keras

    from competition.pipeline.prepare import ensure_data
    from competition.pipeline.train import train_folds
    from competition.pipeline.train_seq import train_sequence_folds

    rows = []
    for name in VARIANTS:
        config = _variant(config_path, overrides, name)
        ensure_data(config)
        first = train_folds(config, folds, force)
        keras.backend.clear_session()
        second = train_sequence_folds(config, folds, force)
        keras.backend.clear_session()
        for one, two in zip(first, second, strict=True):
            rows.append(
                {
                    "input": name,
                    "fold": one["fold"],
                    "experiment": config.experiment,
                    "stage1_score": one["score"],
                    "stage1_seconds": one["train_seconds"],
                    "stage2_score": two["score"],
                    "stage2_seconds": two["train_seconds"],
                    "baseline_score": one["baseline_score"],
                    "metric": config.task.metric.name,
                }
            )
    report = {"config": str(config_path), "overrides": overrides, "rows": rows}
    report["gain_vs_2d"] = gains(rows)
    write_text_atomic(out, json.dumps(report, indent=2))
    return report


def gains(rows: list[dict]) -> dict:
    """Each variant's relative change of the score from 2D's, per fold (negative: lower)."""
    plain = {r["fold"]: r["stage1_score"] for r in rows if r["input"] == "2d"}
    found = {}
    for r in rows:
        for stage in (1, 2):
            key = f"{r['input']} + sequence" if stage == 2 else r["input"]
            value = r[f"stage{stage}_score"]
            found[f"{key} [fold {r['fold']}]"] = (value - plain[r["fold"]]) / plain[r["fold"]]
    return found


def table(report: dict) -> str:
    lines = [
        "| input | stage | fold | validation score | vs 2D | train seconds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    gain = report["gain_vs_2d"]
    for r in report["rows"]:
        fold = r["fold"]
        for stage, label in ((1, "CNN"), (2, "CNN + sequence")):
            key = f"{r['input']} + sequence" if stage == 2 else r["input"]
            seconds = r["stage1_seconds"] + (r["stage2_seconds"] if stage == 2 else 0)
            change = gain[f"{key} [fold {fold}]"]
            lines.append(
                f"| {r['input']} | {label} | {fold} | {r[f'stage{stage}_score']:.4f} "
                f"| {change:+.1%} | {seconds:.0f} |"
            )
    return "\n".join(lines)
