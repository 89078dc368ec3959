"""Localise, then classify (the `localise:` section): the two-stage pipeline
of a study-level task whose labels are seen in small regions.

    make localise   per series kind and fold: the keypoint localiser trained on
                    the fold's training units' points; out-of-fold points for its
                    validation units (never their own labels), test points from
                    every fold's localiser; the accuracy report
    make classify   crops around the points (cached), per kind and fold the crop
                    classifier, its out-of-fold predictions assembled per unit
                    (several series of a kind: mean or max; a missing kind: the
                    fallback), the CV, test predictions and the checked submission
    make whole-series  the same folds and heads from whole series (the baseline)

runs/<experiment>/localise/: series.csv, <kind>/fold<k>/localiser/, points.csv,
<kind>/test_points.csv, crops/, <kind>/fold<k>/classifier/, oof.csv,
test_preds.csv, report.json; whole/<kind>/fold<k>/, whole.json. Every model
resumes after a kill (its epoch backup) and is reused once saved.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import Config
from competition.errors import ConfigError
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.localise import coordinates
from competition.localise.series import Volume, missing_kinds, route_series, volumes
from competition.localise.settings import SeriesKind

POINT_COLUMNS = [
    "unit",
    "series",
    "kind",
    "target",
    "slice",
    "instance",
    "x",
    "y",
    "score",
    "found",
    "profile",  # each slice's peak over the highest, space-separated
]


@dataclass
class Study:
    """What every step reads once: the config, labels, folds, the series by
    kind and their volumes."""

    config: Config
    labels: pd.DataFrame  # index: unit
    folds: pd.Series  # unit -> fold
    series: pd.DataFrame  # unit, series, kind, description, split
    volumes: dict[str, Volume]
    report: list[str]
    # series, target, slice, visibility: how much of a target each slice of a
    # masked series shows (localise.masks); empty without masks
    visibility: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["series", "target", "slice", "visibility"])
    )

    @property
    def out(self) -> Path:
        return self.config.runs.root / "localise"

    @property
    def kinds(self) -> list[SeriesKind]:
        return self.config.localise.series.kinds

    def targets(self, kind: SeriesKind) -> list[str]:
        """The targets a kind shows that have points (see softmax_targets), in the task's order."""
        located = located_targets(self.config)
        return [
            t
            for h in self.config.task.heads
            if h.name in kind.heads
            for t in softmax_targets(h)
            if located is None or t in located
        ]

    def softmax_targets(self, kind: SeriesKind) -> list[str]:
        """Every target of the kind's heads, located or not (the whole-series model's)."""
        heads = [h for h in self.config.task.heads if h.name in kind.heads]
        return [t for h in heads for t in softmax_targets(h)]

    def units(self, split: str, fold: int | None = None, training: bool = False) -> list[str]:
        if split == "test":
            return sorted(self.series.loc[self.series.split == "test", "unit"].unique())
        chosen = (
            self.folds
            if fold is None
            else self.folds[(self.folds != fold) if training else (self.folds == fold)]
        )
        return sorted(chosen.index)

    def series_of(self, kind: SeriesKind, units: list[str]) -> pd.DataFrame:
        rows = self.series[(self.series.kind == kind.name) & self.series.unit.isin(units)]
        return rows[rows.series.isin(self.volumes)]


def softmax_targets(head) -> list[str]:
    """What a point is labelled with: one softmax of the head. A column of
    text classes (Lumbar's grade per level) or, for a head whose columns are
    its classes one-hot (Abdominal's liver), the head itself."""
    return [head.name] if head.onehot else list(head.columns)


def located_targets(config: Config) -> set[str] | None:
    """The targets the masks mark (None: every target, from the coordinates CSV)."""
    masks = config.localise.masks
    return set(masks.targets) if masks.dir else None


def check_settings(config: Config) -> None:
    task, kinds = config.task, config.localise.series.kinds
    if not kinds:
        raise ConfigError(
            "Config key 'localise.series.kinds' is empty: the two-stage pipeline needs "
            "at least one series kind with the heads it shows."
        )
    names = {h.name for h in task.heads}
    for kind in kinds:
        unknown = [h for h in kind.heads if h not in names]
        if unknown:
            raise ConfigError(
                f"Config key 'localise.series.kinds' ({kind.name}): heads {unknown} "
                f"are none of task.heads ({sorted(names)})"
            )
    for head in task.heads:
        if head.kind != "multiclass":
            raise ConfigError(
                f"The crop classifier predicts a softmax of classes per point: head "
                f"{head.name!r} is {head.kind}, not multiclass."
            )
    spec = config.localise
    if spec.masks.dir is None and spec.coordinates.csv is None:
        raise ConfigError(
            "Config keys 'localise.coordinates.csv' and 'localise.masks.dir' are both null: "
            "the localiser learns from one of them."
        )
    known = {t for h in task.heads for t in softmax_targets(h)}
    for key, names in (("localise.masks.targets", spec.masks.targets),
                       ("localise.crop.mm_by_target", spec.crop.mm_by_target)):  # fmt: skip
        unknown = sorted(set(names) - known)
        if unknown:
            raise ConfigError(
                f"Config key '{key}' names {unknown}, which are no target of the task: "
                f"expected among {sorted(known)} (a one-hot head's name, or a column)."
            )


def read_study(config: Config) -> Study:
    from competition.data.folds import read_folds
    from competition.data.index import read_index
    from competition.data.labels import read_labels
    from competition.pipeline.prepare import ensure_data

    check_settings(config)
    layout = ensure_data(config)
    task, routing = config.task, config.localise.series
    index = read_index(layout)
    labels = read_labels(task, layout.train_csv)
    folds = read_folds(layout).set_index("image_id")["fold"]
    report, parts = [], []
    for split in ("train", "test"):
        found, lines = route_series(task, routing, index, layout.root, split)
        parts.append(found.assign(split=split))
        report += lines
    series = pd.concat(parts, ignore_index=True)
    found = volumes(
        task,
        routing,
        index,
        layout.root,
        config.preprocess.windows,
        config.localise.coordinates.instance,
    )
    shown = {h for k in routing.kinds for h in k.heads}
    unshown = [h.name for h in task.heads if h.name not in shown]
    if unshown:
        report.insert(0, f"heads no series kind shows: {unshown}: every unit gets the prior")
    unmarked = unlocated_heads(config)
    if unmarked:
        report.insert(
            0,
            f"heads no mask marks: {unmarked}: from make whole-series where it has run, "
            "else the training prior",
        )
    study = Study(config, labels, folds, series, found, report)
    for split in ("train", "test"):
        units = study.units(split)
        for unit, kinds in missing_kinds(
            series[series.split == split], units, [k.name for k in study.kinds]
        ).items():
            study.report.append(
                f"{split} unit {unit} has no series of kind(s) {kinds}: "
                "their heads get the training prior"
            )
    write_csv_atomic(study.out / "series.csv", series)
    return study


# --- stage 1: the localiser ------------------------------------------------------------------


def unlocated_heads(config: Config) -> list[str]:
    """Heads none of whose targets the masks mark (none without masks)."""
    located = located_targets(config)
    if located is None:
        return []
    return [h.name for h in config.task.heads if not set(softmax_targets(h)) & located]


def _read_points(study: Study) -> pd.DataFrame:
    """The coordinates CSV's points, or the masks' (their visibility kept in the study)."""
    config = study.config
    if config.localise.masks.dir is None:
        targets = {t for h in config.task.heads for t in softmax_targets(h)}
        return coordinates.read_points(
            config.localise.coordinates, config.layout.root, config.task.id_field, targets
        )
    from competition.localise.masks import cached_mask_points

    train = study.series[study.series.split == "train"]
    points, study.visibility = cached_mask_points(
        config.localise.masks,
        config.layout.root,
        dict(zip(train.series, train.unit, strict=True)),
        study.volumes,
        study.out,
    )
    study.report.append(
        f"masks: {points.series.nunique()} of {len(train)} training series ({len(points)} points)"
    )
    return points


def labelled_points(study: Study) -> pd.DataFrame:
    """The coordinates CSV's (or the masks') points on a readable series of
    the kind that shows their target, with the slice's position; the others
    are left out with report lines (one per cause, with the first few)."""
    points = _read_points(study)
    kind_of = dict(zip(study.series.series, study.series.kind, strict=True))
    points["kind"] = points.series.map(kind_of)
    shown = {t: k.name for k in study.kinds for t in study.targets(k)}
    wrong = points[points.kind.notna() & (points.kind != points.target.map(shown))]
    for row in wrong.head(5).itertuples():
        study.report.append(
            f"coordinates of {row.target} (unit {row.unit}) on series {row.series} of "
            f"kind {row.kind}, not {shown.get(row.target)}: left out"
        )
    points = points.drop(wrong.index)
    _left_out(study, points[points.kind.isna()], "on a series that is not a readable one of a kind")
    points = points[points.kind.notna()].copy()
    points["slice"] = [
        study.volumes[s].position_of(i) if s in study.volumes else None
        for s, i in zip(points.series, points.instance, strict=True)
    ]
    _left_out(
        study, points[points.slice.isna()], "on an instance its series has no readable slice of"
    )
    return points[points.slice.notna()].astype({"slice": int}).reset_index(drop=True)


def _left_out(study: Study, rows: pd.DataFrame, why: str) -> None:
    if len(rows):
        first = ", ".join(f"{r.unit}/{r.series}/{r.instance}" for r in rows.head(3).itertuples())
        study.report.append(
            f"{len(rows)} coordinate row(s) {why}: left out (unit/series/instance: {first})"
        )


def _localisers(study: Study, kind: SeriesKind, folds: list[int], points, inputs) -> dict:
    """Fold -> the kind's localiser (trained here unless saved) and its slice
    prior, and each fit's record."""
    from competition.localise import fitting, localiser
    from competition.localise.masks import by_series_target

    models, records, priors = {}, {}, {}
    settings = study.config.localise.localiser
    for fold in folds:
        out = study.out / kind.name / f"fold{fold}" / "localiser"
        model = fitting.finished(out)
        if model is None:
            mine = points[
                points.kind.eq(kind.name)
                & points.unit.isin(study.units("train", fold, training=True))
            ]
            records[fold] = localiser.train(
                mine,
                study.targets(kind),
                inputs,
                settings,
                out,
                study.config.seed + fold,
                f"{kind.name} localiser, fold {fold}",
                study.config.model.weights_dir,
                by_series_target(study.visibility),
            )
            model = fitting.finished(out)
        models[fold], priors[fold] = model, localiser.read_prior(out)
    return models, priors, records


def _locate(study, kind, models, priors, inputs, units, fold) -> pd.DataFrame:
    from competition.localise import localiser

    found = []
    for row in study.series_of(kind, units).itertuples():
        for point in localiser.locate(
            models,
            priors,
            inputs,
            row.series,
            study.targets(kind),
            study.config.localise.localiser.min_score,
        ):
            found.append({"unit": row.unit, "kind": kind.name, **point})
    frame = pd.DataFrame(found, columns=POINT_COLUMNS)
    return frame.assign(fold=fold)


def localise_stage(config: Config, folds: list[int] | None = None) -> dict:
    """Stage 1 (see the module): models, out-of-fold and test points, accuracy."""
    from competition.localise.localiser import SliceInputs

    study = read_study(config)
    chosen = folds or list(range(config.folds.k))
    points = labelled_points(study)
    inputs = SliceInputs(study.volumes, config.localise.localiser.image_size)
    timing, oof_parts, test_parts = {}, [], []
    for kind in study.kinds:
        started = time.perf_counter()
        unmarked = sorted(set(study.targets(kind)) - set(points.target[points.kind == kind.name]))
        if unmarked:
            study.report.append(
                f"targets of kind {kind.name} no labelled point marks: {unmarked}: the "
                "localiser never learns them, their points are guesses"
            )
        models, priors, records = _localisers(study, kind, chosen, points, inputs)
        for fold, model in models.items():
            # Located again on every run: min_score and the data may have changed.
            located = _locate(
                study, kind, [model], [priors[fold]], inputs, study.units("train", fold), fold
            )
            write_csv_atomic(study.out / kind.name / f"fold{fold}" / "points.csv", located)
            oof_parts.append(located)
        test = _locate(
            study,
            kind,
            list(models.values()),
            list(priors.values()),
            inputs,
            study.units("test"),
            -1,
        )
        write_csv_atomic(study.out / kind.name / "test_points.csv", test)
        test_parts.append(test)
        timing[kind.name] = {
            "seconds": round(time.perf_counter() - started, 1),
            "fits": {str(f): r for f, r in records.items()},
        }
    oof = pd.concat(oof_parts, ignore_index=True)
    accuracy = point_accuracy(oof, points)
    not_found = oof[~oof.found.astype(bool)]
    for row in not_found.head(20).itertuples():
        study.report.append(
            f"unit {row.unit}, series {row.series}: no point found for {row.target} "
            f"(peak {row.score:.3f} < localiser.min_score): the centre crop"
        )
    report = {
        "folds": chosen,
        "accuracy": accuracy,
        "time": timing,
        "not_found": len(not_found),
        "report": study.report,
    }
    write_text_atomic(study.out / "localise.json", json.dumps(report, indent=2))
    return report


def point_accuracy(predicted: pd.DataFrame, labelled: pd.DataFrame) -> dict:
    """Out of fold, on the labelled series: the share of points within 5 and
    10 pixels (in the slice's pixels), and on the labelled slice (or +-1),
    overall and per level (the coordinates' last target column: Lumbar's level)."""
    joined = predicted.merge(
        labelled[["unit", "series", "target", "level", "slice", "x", "y"]],
        on=["unit", "series", "target"],
        suffixes=("", "_true"),
    )
    if joined.empty:
        return {"points": 0}
    distance = np.hypot(joined.x - joined.x_true, joined.y - joined.y_true)
    off = (joined.slice - joined.slice_true).abs()
    joined = joined.assign(
        within5=distance <= 5, within10=distance <= 10, same=off == 0, near=off <= 1
    )

    def shares(rows):
        return {
            "points": len(rows),
            "within_5px": round(float(rows.within5.mean()), 4),
            "within_10px": round(float(rows.within10.mean()), 4),
            "same_slice": round(float(rows.same.mean()), 4),
            "within_1_slice": round(float(rows.near.mean()), 4),
        }

    return {
        **shares(joined),
        "median_px": round(float(np.median(distance)), 2),
        "per_level": {lv: shares(rows) for lv, rows in joined.groupby("level")},
    }


def markdown(report: dict) -> str:
    """The localiser's out-of-fold accuracy per level, its time per kind, the report lines."""
    accuracy = report["accuracy"]
    lines = [
        "| level | points | within 5 px | within 10 px | same slice | within 1 slice |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for level, row in {**accuracy.get("per_level", {}), "all": accuracy}.items():
        if row.get("points"):
            lines.append(
                f"| {level} | {row['points']} | {row['within_5px']:.1%} | {row['within_10px']:.1%} "
                f"| {row['same_slice']:.1%} | {row['within_1_slice']:.1%} |"
            )
    lines += [f"{kind}: {row['seconds']} s" for kind, row in report["time"].items()]
    lines += [f"- {line}" for line in report["report"][:10]]
    more = len(report["report"]) - 10
    return "\n".join([*lines, *([f"... and {more} more report lines"] if more > 0 else []), ""])
