"""`make runs`: every experiment under runs/ in one table. Per experiment and
stage (1: the CNN, 2: the sequence or pooled stage over it, stack:<name>:
make stack's boosters; a blend is a row of its own, its honest CV): the pooled
out-of-fold score and each fold's, the settings that differ from the
nearest preset (the config of configs/ with the same task and the fewest
differences in what decides the model), training time, the date of its
newest fold, and the public leaderboard score the user recorded with
`make runs LB=<experiment>=<score>` (runs/<experiment>/leaderboard.json).
Written to runs/experiments.md and experiments.csv too."""

from __future__ import annotations

import datetime
import functools
import json
import math
from pathlib import Path

import pandas as pd
import yaml

from competition.config import load_config
from competition.errors import KitError
from competition.evaluation.cv import scored
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.pipeline.runs import model_settings
from competition.training.records import METRICS

LEADERBOARD = "leaderboard.json"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STAGES = {1: "", 2: "sequence/"}


@functools.cache
def presets() -> dict[str, dict]:
    """configs/**.yaml (base.yaml aside) -> its flat model settings."""
    found = {}
    for path in sorted(CONFIGS.rglob("*.yaml")) if CONFIGS.is_dir() else []:
        if path.name != "base.yaml":
            found[str(path.relative_to(CONFIGS.parent))] = model_settings(
                load_config(path).to_dict()
            )
    return found


def differences(settings: dict) -> tuple[str, dict]:
    """(nearest preset, {key: value} where the experiment differs from it)."""
    best, best_diff = "", None
    for name, preset in presets().items():
        if preset.get("task.name") != settings.get("task.name"):
            continue
        diff = {k: v for k, v in settings.items() if preset.get(k) != v}
        if best_diff is None or len(diff) < len(best_diff):
            best, best_diff = name, diff
    return best, best_diff if best_diff is not None else {}


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def stage_row(folder: Path, stage: int, task, base: dict) -> dict | None:
    """One experiment stage's row, or None when no fold of it finished."""
    metrics, oofs = {}, []
    for fold_dir in sorted(folder.glob("fold*")):
        path = fold_dir / STAGES[stage] / METRICS
        if fold_dir.name[4:].isdigit() and path.is_file():
            metrics[int(fold_dir.name[4:])] = (json.loads(path.read_text()), path.stat().st_mtime)
            oof = fold_dir / STAGES[stage] / "oof.csv"
            if oof.is_file():
                oofs.append(pd.read_csv(oof, dtype={"image_id": str}))
    if not metrics:
        return None
    pooled = scored(task, pd.concat(oofs, ignore_index=True))["score"] if oofs else math.nan
    newest = max(mtime for _, mtime in metrics.values())
    return {
        **base,
        "stage": stage,
        "cv": pooled,
        "folds": " ".join(f"{k}:{m.get('score', math.nan):.4f}" for k, (m, _) in metrics.items()),
        "train_minutes": round(sum(m.get("train_seconds", 0) for m, _ in metrics.values()) / 60, 1),
        "date": datetime.datetime.fromtimestamp(newest).strftime("%Y-%m-%d %H:%M"),
    }


def experiment_rows(runs_dir: Path) -> list[dict]:
    rows = []
    for folder in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        saved = sorted(folder.glob("fold*/config.yaml"))
        if not saved:
            continue
        tree = yaml.safe_load(saved[0].read_text())
        config = load_config(saved[0])
        preset, diff = differences(model_settings(tree))
        lb = read_leaderboard(folder)
        base = {
            "experiment": folder.name,
            "metric": config.task.metric.name,
            "preset": preset,
            "differs": "; ".join(f"{k}={_short(v)}" for k, v in sorted(diff.items())) or "-",
            "public_lb": lb,
        }
        for stage in STAGES:
            row = stage_row(folder, stage, config.task, base)
            if row is not None:
                rows.append(row)
        rows += stack_rows(folder, base)
    return rows + blend_rows(runs_dir)


def _date(path: Path) -> str:
    return datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")


def stack_rows(folder: Path, base: dict) -> list[dict]:
    """The experiment's stacks (make stack: <name>/stack.json), a row each."""
    rows = []
    for path in sorted(folder.glob("*/stack.json")):
        report = json.loads(path.read_text())
        folds = report["cv"]["folds"]
        rows.append({
            **base,
            "stage": f"stack:{report['stack']}",
            "cv": report["cv"]["overall"],
            "folds": " ".join(f"{k}:{v:.4f}" for k, v in folds.items()),
            "train_minutes": round(report.get("seconds", 0) / 60, 1),
            "date": _date(path),
        })  # fmt: skip
    return rows


def blend_rows(runs_dir: Path) -> list[dict]:
    """The blends (make blend: runs/<name>/blend.json), a row each: their honest CV."""
    rows = []
    for path in sorted(Path(runs_dir).glob("*/blend.json")):
        report = json.loads(path.read_text())
        weights = ", ".join(f"{k} {v:.2f}" for k, v in report["weights"].items())
        rows.append({
            "experiment": report["blend"], "stage": "blend", "metric": report["metric"],
            "cv": report["cv_honest"], "folds": "-", "public_lb": read_leaderboard(path.parent),
            "differs": f"weights {weights}", "preset": "-", "train_minutes": 0.0,
            "date": _date(path),
        })  # fmt: skip
    return rows


def read_leaderboard(folder: Path) -> float:
    path = folder / LEADERBOARD
    return float(json.loads(path.read_text())["public_lb"]) if path.is_file() else math.nan


def record_leaderboard(runs_dir: Path, assignment: str) -> Path:
    """`<experiment>=<score>` -> runs/<experiment>/leaderboard.json."""
    name, _, value = assignment.partition("=")
    try:
        score = float(value)
    except ValueError:
        raise KitError(
            f"LB expects <experiment>=<score>, e.g. LB=baseline=0.0712. Received: {assignment!r}"
        ) from None
    folder = Path(runs_dir) / name
    if not any(folder.glob("fold*/config.yaml")):
        known = sorted(p.name for p in Path(runs_dir).glob("*") if any(p.glob("fold*/config.yaml")))
        raise KitError(
            f"LB={assignment}: no experiment {name!r} in {runs_dir} "
            f"(there: {', '.join(known) or 'none'})"
        )
    today = datetime.date.today().isoformat()
    return write_text_atomic(folder / LEADERBOARD, json.dumps({"public_lb": score, "date": today}))


COLUMNS = ("experiment", "stage", "metric", "cv", "folds", "public_lb", "differs", "preset",
           "train_minutes", "date")  # fmt: skip


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c]:.1f}" if c == "train_minutes" else _cell(row[c]) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def runs_table(runs_dir: Path) -> str:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise KitError(
            f"No runs folder at {runs_dir}: train an experiment first (make train FOLD=0)"
        )
    rows = experiment_rows(runs_dir)
    table = markdown(rows)
    write_text_atomic(runs_dir / "experiments.md", table + "\n")
    write_csv_atomic(
        runs_dir / "experiments.csv", pd.DataFrame(rows, columns=list(COLUMNS)), index=False
    )
    return table
