"""Localise, then classify: the heatmaps, the crops' physical size, the
coordinates and series-kind readers, and the two stages end to end on the
Lumbar Spine stand-in in its real layout (killed -9 in each stage and
resumed, a study missing a series kind, a localiser that finds nothing, a
label permutation through both stages)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.errors import KitError
from competition.localise import heatmaps
from competition.localise.coordinates import read_points, target_name
from competition.localise.crops import crop, stored_size, window
from competition.localise.localiser import prior_weights
from competition.localise.series import kind_of_description
from competition.localise.settings import CoordinatesSpec, CropConfig, SeriesKind, SeriesRouting


def test_a_heatmap_peak_is_found_to_a_fraction_of_a_pixel():
    found = heatmaps.peak(heatmaps.gaussian(32, 10.3, 7.6, sigma=2.0))
    assert abs(found.x - 10.3) < 0.3 and abs(found.y - 7.6) < 0.3
    assert found.score == pytest.approx(1.0, abs=0.1)


def test_the_slice_prior_chooses_between_slices_that_look_alike():
    """A left and a right foramen look the same: the training positions decide."""
    maps = np.zeros((9, 16, 16), np.float32)
    maps[1] = heatmaps.gaussian(16, 5, 5, 1.5) * 0.9
    maps[7] = heatmaps.gaussian(16, 11, 5, 1.5) * 0.9
    left_at = [0.85, 0.9, 0.875]  # relative positions of the labelled slices
    s, top = heatmaps.best_slice(maps, prior_weights(left_at, 9))
    assert s == 7 and abs(top.x - 11) < 0.5
    s, _ = heatmaps.best_slice(maps, prior_weights([], 9))  # no prior: the first highest peak
    assert s == 1


@dataclass
class FakeVolume:
    """A series of one slice shape with given pixel spacing (rows, columns mm)."""

    slices: list
    spacing: tuple

    def slice(self, i):
        return self.slices[min(max(i, 0), len(self.slices) - 1)]


def test_a_crop_covers_the_same_millimetres_whatever_the_pixel_spacing():
    """A 10 x 10 mm square at 0.5 mm rows and 1.0 mm columns: 20 rows x 10
    columns of pixels; a 20 mm crop shows it as the central quarter."""
    image = np.zeros((100, 200), np.float32)
    image[30:50, 45:55] = 255.0  # centre (x 50, y 40)
    volume = FakeVolume([image * 0, image, image * 0.5], spacing=(0.5, 1.0))
    settings = CropConfig(mm=20.0, size=40, slices=1, jitter_mm=0.0)
    made = crop(volume, 1, x=50.0, y=40.0, settings=settings)
    assert made.shape == (3, 40, 40)
    bright = made[1] > 127
    assert bright.mean() == pytest.approx(0.25, abs=0.03)
    rows, cols = np.nonzero(bright)
    assert abs(rows.mean() - 19.5) < 1 and abs(cols.mean() - 19.5) < 1
    assert made[0].max() == 0 and 100 < made[2].max() < 150  # the neighbours, in order
    at_end = crop(volume, 2, 50.0, 40.0, settings)  # +1 past the end: the last slice again
    np.testing.assert_array_equal(at_end[1], at_end[2])


def test_training_windows_jitter_within_the_margin_and_evaluation_takes_the_centre():
    settings = CropConfig(mm=20.0, size=20, slices=0, jitter_mm=5.0)
    n = stored_size(settings)
    assert n == 30
    stored = np.zeros((64, 1, n, n), np.uint8)
    stored[:, :, n // 2, n // 2] = 255
    centre = window(stored, settings, None)
    assert centre.shape == (64, 1, 20, 20) and (centre[:, 0, 10, 10] == 255).all()
    moved = window(stored, settings, np.random.default_rng(0))
    offsets = [np.argwhere(m[0] == 255)[0] - 10 for m in moved if (m == 255).any()]
    assert len({tuple(o) for o in offsets}) > 10 and np.abs(offsets).max() <= 5


def _coordinates(tmp_path, rows):
    frame = pd.DataFrame(
        rows, columns=["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    )
    frame.to_csv(tmp_path / "train_label_coordinates.csv", index=False)


def test_the_coordinates_name_their_head_column_and_bad_rows_are_named(tmp_path):
    targets = {target_name(["Spinal Canal Stenosis", lv]) for lv in ("L1/L2", "L4/L5")}
    assert "spinal_canal_stenosis_l4_l5" in targets
    _coordinates(tmp_path, [["7", "11", "5", "Spinal Canal Stenosis", "L4/L5", "120.5", "88"]])
    points = read_points(CoordinatesSpec(), tmp_path, "study_id", targets)
    assert points.iloc[0][["unit", "target", "level", "instance"]].tolist() == [
        "7",
        "spinal_canal_stenosis_l4_l5",
        "l4_l5",
        5,
    ]
    _coordinates(
        tmp_path,
        [
            ["7", "11", "5", "Spinal Canal Stenosis", "L4/L5", "120.5", "88"],
            ["7", "11", "6", "Spinal Canal Stenosis", "L1/L2", "n/a", "88"],
        ],
    )
    with pytest.raises(KitError, match=r"line 3: expected a number in column 'x'. Received: 'n/a'"):
        read_points(CoordinatesSpec(), tmp_path, "study_id", targets)
    _coordinates(tmp_path, [["7", "11", "5", "Spinal Canal Stenosis", "L6/S2", "1", "2"]])
    with pytest.raises(KitError, match="spinal_canal_stenosis_l6_s2"):
        read_points(CoordinatesSpec(), tmp_path, "study_id", targets)


def test_a_series_kind_is_matched_by_its_description_whatever_its_spelling():
    routing = SeriesRouting(
        kinds=[
            SeriesKind("sagittal_t2", ["Sagittal T2/STIR"], ["spinal"]),
            SeriesKind("axial_t2", ["Axial T2"], ["sub"]),
        ]
    )
    assert kind_of_description(routing, "sagittal  t2 / stir") == "sagittal_t2"
    assert kind_of_description(routing, "AXIAL T2") == "axial_t2"
    assert kind_of_description(routing, "Axial T1") is None


# --- both stages, end to end, on the stand-in in the real layout -------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from helpers import REPO, TINY_TWO_STAGE, cli, hooked, overrides  # noqa: E402

CONFIG = REPO / "configs/synthetic/rsna_lumbar_2024.yaml"

TINY = [
    "synth.patients=16",
    "synth.image_size=64",
    "synth.slices_per_series=[7,9]",
    "synth.test_fraction=0.25",
    *TINY_TWO_STAGE,
]


TWO_KINDS = """extends: {config}
localise:
  series:
    kinds:
      - {{name: sagittal_t2, match: [Sagittal T2/STIR], heads: [spinal], combine: mean}}
      - {{name: axial_t2, match: [Axial T2], heads: [left_subarticular, right_subarticular],
         combine: max}}
"""


def _kit(command: str, root, runs, *extra: str, env=None, expect: int = 0):
    """The kit's command on the tiny stand-in (two of the preset's three
    series kinds, for the suite's time: the foramina's heads get the prior);
    `env`: more variables (a fault hook)."""
    config = Path(runs).parent / "two_kinds.yaml"
    config.write_text(TWO_KINDS.format(config=CONFIG))
    args = [
        "--config",
        str(config),
        *overrides(
            f"data.root={root}",
            f"runs_dir={runs}",
            *TINY,
            *extra,
            f"predict.submissions_dir={Path(runs).parent / 'submissions'}",
        ),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "competition", command, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert done.returncode == expect, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory):
    """Both stages on a tiny stand-in, each killed -9 once and run again; one
    training study's Axial T2 series removed."""
    base = tmp_path_factory.mktemp("lumbar")
    root, runs = base / "competition", base / "runs"
    _kit("synth", root, runs)
    lost = pd.read_csv(root / "train_series_descriptions.csv", dtype=str)
    lost = lost[lost.series_description == "Axial T2"].iloc[0]
    shutil.rmtree(root / "train_images" / lost.study_id / lost.series_id)
    # Spelled otherwise, as another export may: the kinds still match.
    described = pd.read_csv(root / "test_series_descriptions.csv", dtype=str)
    described["series_description"] = described.series_description.str.upper() + " "
    described.to_csv(root / "test_series_descriptions.csv", index=False)
    coordinates = pd.read_csv(root / "train_label_coordinates.csv", dtype=str)
    spinal = coordinates.index[coordinates.condition == "Spinal Canal Stenosis"][0]
    coordinates.loc[spinal, "instance_number"] = "999"  # no such slice
    coordinates.to_csv(root / "train_label_coordinates.csv", index=False)
    killed = _kit(
        "localise", root, runs, env=hooked(KIT_KILL_ON="rename:epoch-0002.weights.h5"), expect=-9
    )
    localised = _kit("localise", root, runs)
    killed_too = _kit(
        "classify", root, runs, env=hooked(KIT_KILL_ON="rename:model.keras"), expect=-9
    )
    classified = _kit("classify", root, runs)
    return (
        root,
        runs / "rsna_lumbar_2024_synthetic" / "localise",
        lost,
        [killed, localised, killed_too, classified],
    )


@pytest.mark.slow
def test_both_stages_resume_after_kill_and_write_a_checked_submission(two_stage):
    root, out, lost, (killed, localised, killed_too, classified) = two_stage
    assert "Resuming sagittal_t2 localiser, fold 0 at epoch 2" in localised.stdout
    assert "Resuming sagittal_t2 classifier, fold 0 at epoch 3" in classified.stdout
    assert not list(out.rglob("backup"))  # every fit finished and removed its backup
    report = json.loads((out / "localise.json").read_text())
    assert report["accuracy"]["points"] > 0 and 0 <= report["accuracy"]["within_10px"] <= 1
    assert set(report["accuracy"]["per_level"]) == {"l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"}
    missing = f"train unit {lost.study_id} has no series of kind(s) ['axial_t2']"
    assert any(line.startswith(missing) for line in report["report"])
    assert any(
        "1 coordinate row(s) on an instance its series has no readable slice of" in line
        for line in report["report"]
    )
    unrouted = [line for line in report["report"] if "is none of localise.series.kinds" in line]
    assert unrouted and all("'sagittal t1" in line.lower() for line in unrouted)
    gone = "coordinate row(s) on a series that is not a readable one of a kind: left out"
    assert any(gone in line for line in report["report"])
    assert (
        "heads no series kind shows: ['left_foraminal', 'right_foraminal']" in report["report"][0]
    )
    result = json.loads((out / "two_stage-labelled" / "report.json").read_text())
    test_studies = pd.read_csv(root / "test_series_descriptions.csv", dtype=str).study_id.nunique()
    assert result["rows"] == 25 * test_studies
    submission = pd.read_csv(result["submission"])
    assert submission.columns.tolist() == ["row_id", "normal_mild", "moderate", "severe"]
    np.testing.assert_allclose(submission.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-3)
    checked = cli(
        "validate",
        result["submission"],
        "--config",
        str(REPO / "configs/synthetic/rsna_lumbar_2024.yaml"),
        "--set",
        f"data.root={root}",
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The study without its Axial T2 series: the subarticular heads get its fold's prior.
    from competition.config import load_config
    from competition.data.folds import read_folds
    from competition.data.labels import read_labels
    from competition.pipeline.classify import class_prior

    config = load_config(CONFIG, overrides=[f"data.root={root}", *TINY])
    folds = read_folds(config.layout).set_index("image_id")["fold"]
    labels = read_labels(config.task, config.layout.train_csv)
    prior = class_prior(config.task, labels.loc[folds.index[folds != folds[lost.study_id]]])
    oof = pd.read_csv(out / "two_stage-labelled" / "oof.csv", dtype={"image_id": str}).set_index(
        "image_id"
    )
    columns = [i for i, o in enumerate(config.task.outputs) if o.startswith("left_subarticular")]
    got = oof.loc[lost.study_id, [f"pred_{config.task.outputs[i]}" for i in columns]].to_numpy(
        float
    )
    np.testing.assert_allclose(got, prior[columns], atol=1e-5)


@pytest.mark.slow
def test_a_localiser_that_finds_nothing_falls_back_to_the_centre_with_a_report_line(two_stage):
    root, out, _, _ = two_stage
    runs = out.parent.parent
    _kit("localise", root, runs, "localise.localiser.min_score=1.0")
    report = json.loads((out / "localise.json").read_text())
    assert report["not_found"] > 0
    assert any(
        "no point found for" in line and "the centre crop" in line for line in report["report"]
    )
    points = pd.read_csv(out / "sagittal_t2" / "fold0" / "points.csv")
    assert not points.found.any()
    assert (points.x == 32).all() and (points.y == 32).all()  # 64 px slices: their centre


SPINAL_ONLY = """extends: {config}
localise:
  series:
    kinds:
      - {{name: sagittal_t2, match: [Sagittal T2/STIR], heads: [spinal], combine: mean}}
"""
LEARN = ("synth.patients=64", "synth.image_size=96", "synth.slices_per_series=[7,9]",
         "synth.test_fraction=0.2", "folds.k=2", "data.workers=1",
         "localise.localiser.image_size=64", "localise.localiser.epochs=4",
         "localise.classifier.epochs=10", "localise.classifier.units=16")  # fmt: skip


def _spinal_loss(oof: pd.DataFrame, labels: pd.DataFrame) -> float:
    """The metric's spinal term: the log loss over the spinal columns,
    weighted 1/2/4 by the true grade."""
    grades = ["Normal/Mild", "Moderate", "Severe"]
    total, weight = 0.0, 0.0
    for column in [c for c in labels if c.startswith("spinal_canal_stenosis")]:
        p = oof[[f"pred_{column}={g}" for g in grades]].to_numpy(float)
        truth = labels.loc[oof.index, column]
        for row, grade in enumerate(truth):
            if isinstance(grade, str):
                k = grades.index(grade)
                total += -np.log(max(p[row, k], 1e-7)) * (1, 2, 4)[k]
                weight += (1, 2, 4)[k]
    return total / weight


@pytest.mark.slow
def test_the_grades_are_learnt_and_a_unit_level_permutation_scores_at_the_prior(tmp_path):
    """The spinal canal through both stages: as the stand-in is, and with
    train.csv's rows shuffled across studies (every grade kept, tied to the
    wrong study, the coordinates left as they are). The localiser never
    reads a grade, so the permuted run keeps stage 1 (the same folds.csv,
    checked) and trains stage 2 again. Out of fold the first beats each
    fold's training prior; the second does not."""
    config = tmp_path / "spinal.yaml"
    config.write_text(SPINAL_ONLY.format(config=CONFIG))
    root, runs = tmp_path / "competition", tmp_path / "runs"
    settings = (f"data.root={root}", f"runs_dir={runs}", "experiment=spinal",
                f"predict.submissions_dir={tmp_path / 'submissions'}")  # fmt: skip
    args = ["--config", str(config), *overrides(*settings, *LEARN)]
    out = runs / "spinal" / "localise"
    ratios, folds = {}, None
    for name in ("labels", "permuted"):
        if name == "permuted":
            train = pd.read_csv(root / "train.csv", dtype=str)
            columns = [c for c in train if c != "study_id"]
            train[columns] = train[columns].sample(frac=1, random_state=0).to_numpy()
            train.to_csv(root / "train.csv", index=False)
            for trained in out.glob("*/fold*/classifier-labelled"):
                shutil.rmtree(trained)
        done = cli("two-stage" if name == "labels" else "classify", *args, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert folds is None or (root / "folds.csv").read_text() == folds
        folds = (root / "folds.csv").read_text()
        oof = pd.read_csv(out / "two_stage-labelled" / "oof.csv", dtype={"image_id": str})
        oof = oof.set_index("image_id")
        labels = pd.read_csv(root / "train.csv", dtype=str).set_index("study_id")
        ratios[name] = _spinal_loss(oof, labels) / _spinal_loss(_fold_priors(oof, labels), labels)
    print("spinal loss / the prior's:", ratios)
    assert ratios["labels"] < 0.75, ratios
    assert ratios["permuted"] > 0.9, ratios


def _fold_priors(oof: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Each study's spinal columns predicted as its fold's training shares (none under 1%)."""
    prior = oof.copy()
    grades = ["Normal/Mild", "Moderate", "Severe"]
    for fold in oof.fold.unique():
        training = labels.loc[oof.index[oof.fold != fold]]
        for column in [c for c in labels if c.startswith("spinal")]:
            shares = training[column].value_counts(normalize=True)
            floored = np.array([max(shares.get(g, 0.0), 0.01) for g in grades])
            prior.loc[oof.fold == fold, [f"pred_{column}={g}" for g in grades]] = (
                floored / floored.sum()
            )
    return prior


@pytest.mark.slow
def test_without_a_descriptions_csv_the_kinds_come_from_the_dicom_headers(two_stage):
    """The headers' SeriesDescription route each series as the CSV does."""
    import dataclasses

    from competition.config import load_config
    from competition.data.index import read_index
    from competition.localise.series import route_series

    root = two_stage[0]
    config = load_config(CONFIG, overrides=[f"data.root={root}", *TINY])
    routing = config.localise.series
    index = read_index(config.layout)
    by_csv, _ = route_series(config.task, routing, index, root, "train")
    headers = dataclasses.replace(routing, csv=None, test_csv=None)
    by_header, report = route_series(config.task, headers, index, root, "train")
    assert report == [] and len(by_csv) > 20
    pd.testing.assert_frame_equal(
        by_csv.drop(columns="description"), by_header.drop(columns="description")
    )


@pytest.mark.slow
def test_the_whole_series_baseline_runs_on_the_same_folds_and_writes_its_submission(two_stage):
    root, out, _, _ = two_stage
    _kit("whole-series", root, out.parent.parent)
    result = json.loads((out / "whole_series" / "report.json").read_text())
    two = json.loads((out / "two_stage-labelled" / "report.json").read_text())
    assert set(result["cv"]) == set(two["cv"]) == {"pooled", "fold0", "fold1"}
    assert result["baseline"] == two["baseline"]  # the same folds, the same priors
    assert result["rows"] == two["rows"] and Path(result["submission"]).is_file()
    oof = pd.read_csv(out / "whole_series" / "oof.csv", dtype={"image_id": str})
    same = pd.read_csv(out / "two_stage-labelled" / "oof.csv", dtype={"image_id": str})
    assert oof.image_id.tolist() == same.image_id.tolist()
    assert (oof.fold == same.fold).all()
