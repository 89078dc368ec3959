"""The data report: which images the kit left out, at which stage, and why.

Each stage already records what it could not use; the report gathers them
from disk into `runs/<experiment>/data_report.json` (and prints a summary):

- index: files whose header or pixel data cannot be read (index.csv);
- labels: label rows without an image file, image files without labels
  (folds_excluded.csv, minus what the index already excluded);
- cache: images the cache could not decode (its unreadable.jsonl, minus the
  index's), for the cache of the config's settings;
- training: images the finished folds' training or validation skipped
  (metrics.json);
- prediction: test images whose rows got the folds' training mean
  (predict.json).

An image can be listed by several stages (the cache could not decode it, so
training skipped it); `images_excluded` counts each image once.

A series- or study-level task's report also has `units`, per split: how
many units, their slices (fewest, median, most), their modalities, and
each unit that lost slices, with how many and why (the index's reasons:
unreadable, another orientation or size than its series).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from competition.data.cache.spec import CacheSpec, read_unreadable
from competition.data.index import read_index
from competition.fileio import write_text_atomic
from competition.layout import SPLITS, Layout, RunLayout

STAGES = ("index", "labels", "cache", "training", "prediction")
_SHOWN = 5  # IDs printed per reason


def _index_stage(layout: Layout) -> list[dict]:
    if not layout.index_csv.is_file():
        return []
    index = read_index(layout)
    bad = index[~index["readable"]]
    return [
        {"image_id": r.image_id, "split": r.split, "reason": r.reason}
        for r in bad.itertuples(index=False)
    ]


def _labels_stage(layout: Layout, known: set[tuple[str, str]]) -> list[dict]:
    if not layout.folds_excluded_csv.is_file():
        return []
    excluded = pd.read_csv(layout.folds_excluded_csv, dtype=str, keep_default_na=False)
    return [
        {"image_id": r.image_id, "split": "train", "reason": r.reason}
        for r in excluded.itertuples(index=False)
        if ("train", r.image_id) not in known
    ]


def _cache_stage(cache: CacheSpec, known: set[tuple[str, str]]) -> list[dict]:
    found = []
    for split in SPLITS:
        for image_id, reason in read_unreadable(cache.split_folder(split)).items():
            if (split, image_id) not in known:
                found.append({"image_id": image_id, "split": split, "reason": reason})
    return found


def _training_stage(run: Path) -> list[dict]:
    skipped: dict[str, str] = {}
    for metrics_path in sorted(run.glob("fold*/metrics.json")):
        metrics = json.loads(metrics_path.read_text())
        for key in ("unreadable_in_training", "unreadable_in_validation"):
            skipped.update(metrics.get(key) or {})
    return [{"image_id": i, "split": "train", "reason": r} for i, r in sorted(skipped.items())]


def _prediction_stage(run: Path) -> list[dict]:
    path = run / "predict.json"
    if not path.is_file():
        return []
    unreadable = json.loads(path.read_text()).get("unreadable") or {}
    return [{"image_id": i, "split": "test", "reason": r} for i, r in sorted(unreadable.items())]


def _units(layout: Layout) -> dict:
    """Per split: the units, their slice counts and modalities, and the
    units that lost slices (see the module)."""
    from competition.data.units import unit_of

    if not layout.task.per_unit or not layout.index_csv.is_file():
        return {}
    index = read_index(layout)
    index = index.assign(unit=unit_of(layout.task, index, layout.root))
    index = index[index["unit"] != ""]
    found = {}
    for split, rows in index.groupby("split", sort=True):
        kept = rows[rows["readable"]].groupby("unit").size()
        lost = rows[~rows["readable"]]
        modalities = rows.drop_duplicates("unit")["modality"].replace("", "?")
        found[split] = {
            "units": int(rows["unit"].nunique()),
            "slices": _spread(kept),
            "modalities": modalities.value_counts().to_dict(),
            "lost_slices": {
                unit: dict(Counter(_one_line(r) for r in group["reason"]))
                for unit, group in lost.groupby("unit", sort=True)
            },
        }
    return found


def _spread(counts: pd.Series) -> dict:
    """Fewest, median and most of the counts ({} for none)."""
    if counts.empty:
        return {}
    return {
        "fewest": int(counts.min()),
        "median": float(counts.median()),
        "most": int(counts.max()),
    }


def _unit_lines(units: dict, noun: str) -> list[str]:
    lines = []
    for split, found in units.items():
        slices = found["slices"]
        spread = (f", {slices['fewest']}-{slices['most']} readable slices each (median "
                  f"{slices['median']:g})" if slices else "")  # fmt: skip
        kinds = ", ".join(f"{n} {m}" for m, n in found["modalities"].items())
        lines.append(f"  {split}: {found['units']} {noun}{spread}; {kinds}")
        lost = found["lost_slices"]
        for unit in list(lost)[:_SHOWN]:
            why = "; ".join(f"{n} x {reason}" for reason, n in lost[unit].items())
            lines.append(f"    {unit} lost {why}")
        if len(lost) > _SHOWN:
            lines.append(f"    and {len(lost) - _SHOWN} more {noun} lost slices")
    return lines


def _stage(images: list[dict]) -> dict:
    return {
        "count": len(images),
        "reasons": dict(Counter(image["reason"] for image in images).most_common()),
        "images": images,
    }


def build_report(cache: CacheSpec, runs: RunLayout) -> dict:
    """The report of the competition `cache.layout` describes, for the
    cache of these settings and the experiment's folds."""
    layout, run = cache.layout, runs.root
    index = _index_stage(layout)
    known = {(image["split"], image["image_id"]) for image in index}
    stages = {
        "index": index,
        "labels": _labels_stage(layout, known),
        "cache": _cache_stage(cache, known),
        "training": _training_stage(run),
        "prediction": _prediction_stage(run),
    }
    unique = {(i["split"], i["image_id"]) for images in stages.values() for i in images}
    return {
        "experiment": runs.experiment,
        "data_root": str(layout.root),
        "images_excluded": len(unique),
        "stages": {name: _stage(images) for name, images in stages.items()},
        "units": _units(layout),
        "unit_noun": layout.task.sample_noun,
    }


def _one_line(reason: str, width: int = 100) -> str:
    text = " ".join(reason.split())  # decoder messages span lines
    return text if len(text) <= width else text[: width - 3] + "..."


def summary(report: dict) -> str:
    """A few lines: per stage the count, and per reason a few IDs."""
    units = _unit_lines(report.get("units") or {}, report.get("unit_noun", "units"))
    if units:
        units.insert(0, "Units:")
    if not report["images_excluded"]:
        done = f"Data report: no image left out ({', '.join(report['stages'])})."
        return "\n".join([done, *units])
    lines = [*units, f"Data report ({report['images_excluded']} images left out):"]
    for name, stage in report["stages"].items():
        lines.append(f"  {name}: {stage['count']}")
        for reason, count in stage["reasons"].items():
            ids = [i["image_id"] for i in stage["images"] if i["reason"] == reason]
            more = f" and {count - _SHOWN} more" if count > _SHOWN else ""
            lines.append(f"    {count} x {_one_line(reason)}: {', '.join(ids[:_SHOWN])}{more}")
    return "\n".join(lines)


def write_report(cache: CacheSpec, runs: RunLayout, echo: bool = True) -> Path:
    """runs/<experiment>/data_report.json, and its summary on stdout."""
    report = build_report(cache, runs)
    path = write_text_atomic(runs.root / "data_report.json", json.dumps(report, indent=2))
    if echo:
        print(summary(report))
        print(f"Wrote {path}")
    return path
