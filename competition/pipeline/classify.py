"""Stage 2 of localise-then-classify (see competition.pipeline.localise):
crops around the points, the crop classifier per series kind and fold, its
predictions assembled per unit, the CV, the test predictions and the
checked submission; and the whole-series model on the same folds, the
baseline the two stages are measured against."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from competition.config import Config
from competition.errors import KitError
from competition.fileio import write_csv_atomic, write_text_atomic
from competition.localise.settings import SeriesKind
from competition.pipeline import assemble
from competition.pipeline.localise import (
    Study,
    labelled_points,
    read_study,
    softmax_targets,
    unlocated_heads,
)

WHOLE = "whole_series"  # the baseline's folder and name


def _head_of(task, target: str):
    """The head a target (see softmax_targets) belongs to."""
    return next(h for h in task.heads if target in softmax_targets(h))


def _class_outputs(task, target: str) -> list[int]:
    """Positions in the task's outputs of a target's classes."""
    head = _head_of(task, target)
    if head.onehot:
        return [task.outputs.index(c) for c in head.columns]
    return [task.outputs.index(f"{target}={c}") for c in head.classes]


def _head_parts(study: Study, kind: SeriesKind) -> dict[str, slice]:
    """Head name -> its outputs in the crop classifier's (the kind's heads, one softmax each)."""
    parts, start = {}, 0
    for head in study.config.task.heads:
        if head.name in kind.heads:
            parts[head.name] = slice(start, start + head.class_count)
            start += head.class_count
    return parts


def crop_targets(study: Study, kind: SeriesKind, rows: pd.DataFrame) -> np.ndarray:
    """(N, the kind's classes): each crop's class one-hot under its own head,
    NaN under the others (and where its label is missing)."""
    task = study.config.task
    unit_targets = pd.DataFrame(task.targets(study.labels), index=study.labels.index)
    parts = _head_parts(study, kind)
    y = np.full((len(rows), max(p.stop for p in parts.values())), np.nan, np.float32)
    for i, row in enumerate(rows.itertuples()):
        if row.unit in unit_targets.index:
            y[i, parts[_head_of(task, row.target).name]] = unit_targets.loc[row.unit].to_numpy()[
                _class_outputs(task, row.target)
            ]
    return y


def slice_targets(study: Study, kind: SeriesKind, rows: pd.DataFrame, y: np.ndarray):
    """(N, 2k + 1, classes) soft slice labels (classifier.slice_labels: soft):
    on each of a crop's slices, its target's visibility v there times the
    crop's label, plus (1 - v) on the first class (a slice that does not
    show the target shows nothing wrong). v: 1 on the slices
    classifier.slice_csv lists for the head on that series (0 on its
    others), else the mask's share where the series has one, the Gaussian
    across slices (localiser.slice_sigma) at a labelled coordinate, the
    localiser's profile (each slice's peak over the highest) at a predicted
    point, unknown (NaN, left out of the loss) where there is none."""
    from competition.localise.heatmaps import slice_weight
    from competition.localise.masks import by_series_target

    settings = study.config.localise
    k = settings.crop.slices
    seen = by_series_target(study.visibility)
    listed = listed_slices(study)
    parts = _head_parts(study, kind)
    labelled = rows["source"].eq("labelled").to_numpy() if "source" in rows else np.zeros(len(rows))
    out = np.full((len(rows), 2 * k + 1, y.shape[1]), np.nan, np.float32)
    for i, row in enumerate(rows.itertuples()):
        mask = seen.get((row.series, row.target))
        head = _head_of(study.config.task, row.target).name
        shown = listed.get((row.series, head))
        if shown is not None:  # slices labelled one by one
            volume = study.volumes[row.series]
            picks = around(row.slice, k, volume)
            v = np.array([float(volume.instances[p] in shown) for p in picks])
        elif mask is not None:
            v = mask[around(row.slice, k, mask)]
        elif labelled[i]:
            sigma = settings.localiser.slice_sigma
            v = np.array([slice_weight(d, sigma) for d in range(-k, k + 1)])
        elif isinstance(getattr(row, "profile", None), str):  # a predicted point
            profile = np.array(row.profile.split(), np.float32)
            v = profile[around(row.slice, k, profile)]
        else:
            continue
        part = parts[head]
        first = np.zeros(part.stop - part.start, np.float32)
        first[0] = 1.0
        out[i, :, part] = v[:, None] * y[i, part][None] + (1 - v[:, None]) * first[None]
    return out


def _oof_points(study: Study, kind: SeriesKind) -> pd.DataFrame:
    parts = []
    for fold in range(study.config.folds.k):
        path = study.out / kind.name / f"fold{fold}" / "points.csv"
        if not path.is_file():
            raise KitError(f"No out-of-fold points at {path}: run make localise first.")
        parts.append(pd.read_csv(path, dtype={"unit": str, "series": str}))
    return pd.concat(parts, ignore_index=True)


def _test_points(study: Study, kind: SeriesKind) -> pd.DataFrame:
    path = study.out / kind.name / "test_points.csv"
    if not path.is_file():
        raise KitError(f"No test points at {path}: run make localise first.")
    return pd.read_csv(path, dtype={"unit": str, "series": str})


def _crops(study: Study, rows: pd.DataFrame, name: str) -> np.ndarray:
    from competition.localise.crops import cached_crops

    return cached_crops(
        rows, study.volumes, study.config.localise.crop, study.out / "crops" / f"{name}.npz"
    )


def _fold_classifier(study, kind, fold, train_rows, train_crops, targets,
                     soft_targets) -> tuple[object, dict | None]:  # fmt: skip
    """The fold's crop classifier (saved, or trained on its training units'
    rows of `targets` and, with soft slice labels, of `soft_targets`)."""
    from competition.localise import classifier, fitting

    out = study.out / kind.name / f"fold{fold}" / f"classifier-{variant(study.config)}"
    model = fitting.finished(out)
    if model is not None:
        return model, None
    training = train_rows.unit.isin(study.units("train", fold, training=True)).to_numpy()
    settings = study.config.localise
    record = classifier.train_on_crops(
        classifier.point_task(study.config.task, kind.heads),
        train_crops[training],
        targets[training],
        settings.classifier,
        settings.crop,
        out,
        study.config.seed + fold,
        f"{kind.name} classifier, fold {fold}",
        study.config.model.weights_dir,
        None if soft_targets is None else soft_targets[training],
    )
    return fitting.finished(out), record


def variant(config: Config) -> str:
    """What names a classifier's folder and its results: the points it is
    trained at, and -soft with soft slice labels."""
    soft = config.localise.classifier.slice_labels == "soft"
    return f"{config.localise.crop.train_points}{'-soft' if soft else ''}"


def training_rows(study: Study, kind: SeriesKind, labelled, predicted) -> pd.DataFrame:
    """The crops the classifier learns from (crop.train_points): the labelled
    points, the out-of-fold ones, or both (labelled where a series has its
    target labelled, else predicted); `source` says which."""
    mode = study.config.localise.crop.train_points
    predicted = predicted[predicted.target.isin(study.targets(kind))].assign(source="predicted")
    if mode == "predicted":
        return predicted.reset_index(drop=True)
    mine = labelled[labelled.kind == kind.name].assign(source="labelled")
    if mode == "both":
        have = pd.MultiIndex.from_frame(mine[["series", "target"]])
        rest = ~pd.MultiIndex.from_frame(predicted[["series", "target"]]).isin(have)
        mine = pd.concat([mine, predicted[rest]], ignore_index=True)
    return mine.reset_index(drop=True)


def around(s: int, k: int, series) -> np.ndarray:
    """A crop's slice positions: s-k .. s+k, clamped to the series' (as crops.crop does)."""
    return np.clip(np.arange(s - k, s + k + 1), 0, len(series) - 1)


def listed_slices(study: Study) -> dict[tuple[str, str], set[int]]:
    """(series, head) -> the instances classifier.slice_csv lists for it."""
    from competition.data import csvfile

    settings = study.config.localise
    spec = settings.classifier
    if spec.slice_csv is None:
        return {}
    path = study.config.layout.root / spec.slice_csv
    needed = [settings.series.key, settings.coordinates.instance, spec.slice_column]
    if not path.is_file():
        raise KitError(
            f"No slice labels at {path} (localise.classifier.slice_csv): expected a CSV with "
            f"columns {', '.join(needed)}. Set localise.classifier.slice_csv to null to label "
            "the crops' slices by the masks' visibility alone."
        )
    table = csvfile.read_strings(path, needed, "slice-label CSV").to_pandas()
    table["head"] = table[spec.slice_column].map(spec.slice_heads)
    unknown = sorted(set(table.loc[table["head"].isna(), spec.slice_column]))
    if unknown:
        raise KitError(
            f"{path}: column {spec.slice_column!r} holds {unknown[:3]}, which "
            f"localise.classifier.slice_heads does not map to a head "
            f"(it maps {sorted(spec.slice_heads)})."
        )
    instances = pd.to_numeric(table[settings.coordinates.instance], errors="coerce")
    if instances.isna().any():
        row = int(np.flatnonzero(instances.isna().to_numpy())[0])
        raise KitError(
            f"{path}, line {row + 2}: expected a number in column "
            f"{settings.coordinates.instance!r}. Received: "
            f"{table[settings.coordinates.instance].iloc[row]!r}"
        )
    table["instance"] = instances.astype(int)
    return {
        key: set(rows.instance)
        for key, rows in table.groupby([settings.series.key, "head"], sort=False)
    }


def _point_probabilities(study, kind, rows: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """Each crop's probabilities under its own head: rows + p0..p(c-1) (NaN
    past a narrower head's classes)."""
    parts = _head_parts(study, kind)
    width = max(p.stop - p.start for p in parts.values())
    picked = np.full((len(rows), width), np.nan)
    for i, target in enumerate(rows.target):
        part = parts[_head_of(study.config.task, target).name]
        picked[i, : part.stop - part.start] = predicted[i, part]
    return rows.reset_index(drop=True).join(
        pd.DataFrame(picked, columns=[f"p{k}" for k in range(width)])
    )


def unit_table(
    study: Study, units: list[str], found: pd.DataFrame, prior: np.ndarray
) -> np.ndarray:
    """(units, outputs): each unit's column from its points' probabilities
    (several series of a kind: mean or max, renormalised), the prior where none."""
    task = study.config.task
    table = np.tile(prior, (len(units), 1)).astype(np.float64)
    where = {u: i for i, u in enumerate(units)}
    combine = {t: k.combine for k in study.kinds for t in study.softmax_targets(k)}
    p_columns = [c for c in found.columns if c.startswith("p") and c[1:].isdigit()]
    for (unit, target), rows in found.groupby(["unit", "target"]):
        if unit not in where:
            continue
        outputs = _class_outputs(task, target)
        values = rows[p_columns[: len(outputs)]].to_numpy(np.float64)
        merged = values.max(axis=0) if combine[target] == "max" else values.mean(axis=0)
        table[where[unit], outputs] = merged / max(merged.sum(), 1e-12)
    return table


def _scores(study: Study, units: list[str], predicted: np.ndarray, folds: pd.Series) -> dict:
    task = study.config.task
    truth = task.targets(study.labels.loc[units])
    found = {"pooled": round(float(task.score(truth, predicted)), 5)}
    for fold in sorted(folds.unique()):
        mine = (folds.loc[units] == fold).to_numpy()
        found[f"fold{fold}"] = round(float(task.score(truth[mine], predicted[mine])), 5)
    return found


def class_prior(task, labels: pd.DataFrame) -> np.ndarray:
    """Each softmax's class shares in `labels`, none under 1% (a class the
    rows lack would otherwise be predicted 0 and cost the clip's log loss)."""
    shares = np.nan_to_num(np.nanmean(task.targets(labels), axis=0))
    for head, part in task.head_slices():
        for one in head.softmaxes:
            where = slice(part.start + one.start, part.start + one.stop)
            floored = np.maximum(shares[where], 0.01)
            shares[where] = floored / floored.sum()
    return shares


def _fold_prior(study: Study, fold: int) -> np.ndarray:
    return class_prior(
        study.config.task, study.labels.loc[study.units("train", fold, training=True)]
    )


def classify_stage(config: Config) -> dict:
    """Stage 2 (see the module); stage 1's points must be there."""
    from competition.localise import classifier

    study = read_study(config)
    folds = list(range(config.folds.k))
    oof_found, test_found, timing = [], [], {}
    labelled = labelled_points(study)  # read once (their report lines once), masks' visibility
    for kind in study.kinds:
        started = time.perf_counter()
        oof_rows, test_rows = _oof_points(study, kind), _test_points(study, kind)
        train_rows = training_rows(study, kind, labelled, oof_rows)
        train_crops = _crops(study, train_rows, f"{kind.name}-{config.localise.crop.train_points}")
        oof_crops, test_crops = (
            _crops(study, oof_rows, f"{kind.name}-oof"),
            _crops(study, test_rows, f"{kind.name}-test"),
        )
        # Every training row's targets once: each fold trains on its own rows of them.
        targets = crop_targets(study, kind, train_rows)
        soft = config.localise.classifier.slice_labels == "soft"
        soft_targets = slice_targets(study, kind, train_rows, targets) if soft else None
        crops_seconds = round(time.perf_counter() - started, 1)
        test_sum, records = 0.0, {}
        for fold in folds:
            model, record = _fold_classifier(
                study, kind, fold, train_rows, train_crops, targets, soft_targets
            )
            records[str(fold)] = record
            mine = (oof_rows.fold == fold).to_numpy()
            oof_found.append(
                _point_probabilities(
                    study,
                    kind,
                    oof_rows[mine],
                    classifier.predict_crops(model, oof_crops[mine], config.localise.crop),
                )
            )
            test_sum = test_sum + classifier.predict_crops(model, test_crops, config.localise.crop)
        test_found.append(_point_probabilities(study, kind, test_rows, test_sum / len(folds)))
        timing[kind.name] = {
            "crops_seconds": crops_seconds,
            "seconds": round(time.perf_counter() - started, 1),
            "fits": records,
        }
    oof_points = pd.concat(oof_found, ignore_index=True)
    name = f"two_stage-{variant(config)}"
    return _finish(study, name, oof_points, pd.concat(test_found, ignore_index=True), timing)


def _finish(study: Study, name: str, oof_points, test_points, timing) -> dict:
    """Per unit: out of fold (each fold's prior where a unit has no point) and
    test (the mean prior); scores, tables, the submission, the report."""
    config, task = study.config, study.config.task
    units = study.units("train")
    oof = np.zeros((len(units), len(task.outputs)))
    baseline = np.zeros_like(oof)
    folds = study.folds.loc[units]
    for fold in sorted(folds.unique()):
        mine = (folds == fold).to_numpy()
        chosen = [u for u, m in zip(units, mine, strict=True) if m]
        prior = _fold_prior(study, fold)
        oof[mine] = unit_table(study, chosen, oof_points[oof_points.unit.isin(chosen)], prior)
        baseline[mine] = prior
    out = study.out / name
    sample, test_ids, fields = assemble.test_set(config)
    prior = class_prior(task, study.labels)
    predicted = pd.DataFrame(
        unit_table(study, list(test_ids), test_points, prior),
        index=pd.Index(test_ids, name="image_id"),
        columns=task.outputs,
    )
    unmarked = unlocated_heads(config) if name != WHOLE else []
    if unmarked:
        _from_whole_series(study, unmarked, units, oof, predicted)
    table = pd.DataFrame(oof, columns=[f"pred_{o}" for o in task.outputs]).assign(
        image_id=units, fold=folds.to_numpy()
    )
    write_csv_atomic(out / "oof.csv", table, float_format="%.6g")
    write_csv_atomic(out / "test_preds.csv", predicted.reset_index(), float_format="%.6g")
    final, path, rows = assemble.checked_submission(
        config, sample, predicted, fields, f"{config.experiment}-{name}.csv"
    )
    report = {
        "model": name,
        "metric": task.metric.name,
        "cv": _scores(study, units, oof, study.folds),
        "baseline": _scores(study, units, baseline, study.folds),
        "test_score": assemble.score_if_labelled(config, final),
        "submission": str(path),
        "rows": rows,
        "time": timing,
        "report": study.report,
    }
    write_text_atomic(out / "report.json", json.dumps(report, indent=2, default=str))
    return report


def _from_whole_series(study: Study, heads: list[str], units, oof, predicted) -> None:
    """The outputs of heads no mask marks, out of fold and test, from make
    whole-series (the same folds) where it has run, else left at the prior."""
    task, folder = study.config.task, study.out / WHOLE
    columns = [o for h in task.heads if h.name in heads for o in h.outputs]
    if not (folder / "oof.csv").is_file() or not (folder / "test_preds.csv").is_file():
        study.report.append(f"heads {heads}: the training prior (make whole-series has not run)")
        return
    whole = pd.read_csv(folder / "oof.csv", dtype={"image_id": str}).set_index("image_id")
    theirs = whole.reindex(units)
    if theirs["fold"].isna().any() or (theirs["fold"] != study.folds.loc[units]).any():
        raise KitError(
            f"{folder / 'oof.csv'} was made on other units or folds than this run's "
            f"({len(units)} units): run make whole-series again."
        )
    oof[:, [task.outputs.index(c) for c in columns]] = theirs[[f"pred_{c}" for c in columns]]
    test = pd.read_csv(folder / "test_preds.csv", dtype={"image_id": str}).set_index("image_id")
    test = test.reindex(predicted.index)[columns]
    lacking = test.index[test.isna().to_numpy().max(axis=1)]
    if len(lacking):
        raise KitError(
            f"{folder / 'test_preds.csv'} lacks {len(lacking)} test unit(s) of this run "
            f"(e.g. {lacking[0]}): run make whole-series again."
        )
    predicted.loc[:, columns] = test.to_numpy()
    study.report.append(f"heads {heads}: from make whole-series ({folder})")


# --- the baseline: whole series -----------------------------------------------------------


def whole_stacks(study: Study, rows: pd.DataFrame) -> np.ndarray:
    """(N, T, S, S, 1) uint8: T whole slices of each series evenly spaced
    (localise.classifier.whole_slices), at preprocess.image_size."""
    import cv2

    from competition.data.units import even_picks

    t, size = study.config.localise.classifier.whole_slices, study.config.preprocess.image_size
    out = np.zeros((len(rows), t, size, size, 1), np.uint8)
    for i, series in enumerate(rows.series):
        volume = study.volumes[series]
        for j, s in enumerate(even_picks(len(volume), t)):
            out[i, j, :, :, 0] = cv2.resize(
                volume.slice(int(s)), (size, size), interpolation=cv2.INTER_AREA
            )
    return out


def whole_series_stage(config: Config) -> dict:
    """The baseline: per kind and fold the series model on whole series."""
    from competition.localise import classifier, fitting

    study = read_study(config)
    task = config.task
    oof_found, test_found, timing = [], [], {}
    for kind in study.kinds:
        started = time.perf_counter()
        sub_task = classifier.kind_task(task, kind.heads)
        columns = study.softmax_targets(kind)
        train_rows = study.series_of(kind, study.units("train")).reset_index(drop=True)
        test_rows = study.series_of(kind, study.units("test")).reset_index(drop=True)
        stacks, test_stacks = whole_stacks(study, train_rows), whole_stacks(study, test_rows)
        unit_targets = pd.DataFrame(sub_task.targets(study.labels), index=study.labels.index)
        test_sum = 0.0
        for fold in range(config.folds.k):
            out = study.out / WHOLE / kind.name / f"fold{fold}"
            training = train_rows.unit.isin(study.units("train", fold, training=True)).to_numpy()
            if fitting.finished(out) is None:
                targets = unit_targets.reindex(train_rows.unit[training]).to_numpy(np.float32)
                classifier.train_on_stacks(
                    sub_task,
                    stacks[training],
                    targets,
                    config.localise.classifier,
                    out,
                    config.seed + fold,
                    f"{kind.name} whole series, fold {fold}",
                    config.model.weights_dir,
                )
            model = fitting.finished(out)
            valid = ~training
            oof_found.append(
                _series_columns(
                    sub_task,
                    columns,
                    train_rows[valid],
                    fitting.predict(model, stacks[valid]),
                )
            )
            test_sum = test_sum + fitting.predict(model, test_stacks)
        test_found.append(_series_columns(sub_task, columns, test_rows, test_sum / config.folds.k))
        timing[kind.name] = {"seconds": round(time.perf_counter() - started, 1)}
    return _finish(
        study,
        WHOLE,
        pd.concat(oof_found, ignore_index=True),
        pd.concat(test_found, ignore_index=True),
        timing,
    )


def _series_columns(sub_task, columns, rows: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """A series' outputs as one row per (unit, column) with p0..p(c-1), as the crops give them."""
    found = []
    for i, row in enumerate(rows.itertuples()):
        for column in columns:
            positions = _class_outputs(sub_task, column)
            found.append(
                {
                    "unit": row.unit,
                    "series": row.series,
                    "target": column,
                    **{f"p{k}": predicted[i, p] for k, p in enumerate(positions)},
                }
            )
    return pd.DataFrame(found)


def markdown(report: dict) -> str:
    """The CV beside the prior's, the test score, time per kind, the submission."""
    test = report.get("test_score") or {}
    lines = [
        f"{report['model']}: out-of-fold {report['metric']} {report['cv']['pooled']:.4f} "
        f"(the training prior: {report['baseline']['pooled']:.4f})",
        *([f"test set: {test['score']:.4f}"] if "score" in test else []),
        *[f"{kind}: {row['seconds']} s" for kind, row in report["time"].items()],
        *[f"- {line}" for line in report["report"][:5]],
        f"Wrote {report['submission']} ({report['rows']} rows, checked)",
    ]
    return "\n".join([*lines, ""])
