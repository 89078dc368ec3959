"""Series- and study-level tasks (task.unit) on the Cervical Spine 2022
stand-in, written in the download's layout: the layout, slices ordered by
their position (not their file names), a unit's stack from the cache and
from the files, the CLI end to end (train, predict, validate), learning
against a unit-level label permutation, and bad slices and studies."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from competition.config import ConfigError, load_config
from competition.data.units import even_picks

from helpers import REPO, cli, overrides, synthesize, trained_tiny

CONFIG = REPO / "configs" / "synthetic" / "rsna_cervical_2022.yaml"
LABELS = ["patient_overall", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
TINY = ("synth.patients=30", "synth.slices_per_series=[10, 14]", "synth.image_size=32",
        "preprocess.image_size=32", "series.slices=6", "folds.k=3", "train.epochs=2",
        "train.workers=1")  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny stand-in, fold 0 trained through the CLI: (root, runs, args)."""
    return trained_tiny(tmp_path_factory.mktemp("cervical"), CONFIG, TINY)


def test_the_stand_in_is_written_in_the_downloads_layout(tiny):
    root, _, _ = tiny
    train = pd.read_csv(root / "train.csv", dtype=str)
    assert train.columns.tolist() == ["StudyInstanceUID", *LABELS]
    test = pd.read_csv(root / "test.csv", dtype=str)
    assert test.columns.tolist() == ["StudyInstanceUID", "prediction_type", "row_id"]
    assert (test.row_id == test.StudyInstanceUID + "_" + test.prediction_type).all()
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    assert sample.columns.tolist() == ["row_id", "fractured"]
    assert sample.row_id.tolist() == test.row_id.tolist()
    studies = sorted(p.name for p in (root / "train_images").iterdir())
    assert studies == sorted(train.StudyInstanceUID)
    assert all(re.fullmatch(r"1\.2\.826\.0\.1\.3680043\.\d+", s) for s in studies)
    files = list((root / "train_images" / studies[0]).glob("*.dcm"))
    assert sorted(int(f.stem) for f in files) == list(range(1, len(files) + 1))
    labels = train[LABELS].astype(int)
    assert (labels.patient_overall == labels.iloc[:, 1:].max(axis=1)).all()


def test_some_studies_are_compressed_and_numbered_from_the_top(tmp_path):
    config = load_config(CONFIG, [f"data.root={tmp_path / 'c'}", *TINY[:4], "synth.patients=40"])
    root = synthesize(config, workers=2)
    syntaxes, top_first = set(), 0
    for study in (root / "train_images").iterdir():
        first = pydicom.dcmread(study / "1.dcm", stop_before_pixels=True)
        last = pydicom.dcmread(study / "2.dcm", stop_before_pixels=True)
        syntaxes.add(str(first.file_meta.TransferSyntaxUID))
        top_first += first.ImagePositionPatient[2] > last.ImagePositionPatient[2]
    assert {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"} <= syntaxes  # RLE, JPEG 2000
    assert 0 < top_first < len(list((root / "train_images").iterdir()))


def test_a_units_slices_follow_their_position_not_their_file_names(tiny):
    from competition.data.index import read_index
    from competition.data.units import unit_slices

    root, _, args = tiny
    config = load_config(CONFIG, [f"data.root={root}", *TINY])
    index = read_index(config.layout)
    units = unit_slices(config.task, index, "train")
    by_id = index.set_index("image_id")
    for unit, slices in list(units.slices.items())[:6]:
        z = by_id.loc[slices, "z"].to_numpy()
        assert (np.diff(z) > 0).all(), unit  # from the lowest to the highest
        numbers = [int(s.rsplit("_", 1)[1]) for s in slices]
        assert numbers in (sorted(numbers), sorted(numbers, reverse=True))


def test_a_slice_repeating_another_ones_position_is_left_out(tiny, tmp_path):
    from competition.data.index import build_index
    from competition.data.units import unit_slices

    root, _, _ = tiny
    copy = tmp_path / "competition"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("cache", "index*", "folds*"))
    study = sorted((copy / "train_images").iterdir())[0]
    count = len(list(study.glob("*.dcm")))
    shutil.copy2(study / "2.dcm", study / "99.dcm")  # the same slice under another name
    config = load_config(CONFIG, [f"data.root={copy}", *TINY])
    units = unit_slices(config.task, build_index(config.layout, 1, ("train",)), "train")
    kept = units.slices[study.name]
    assert len(kept) == count and units.repeats == {study.name: [f"{study.name}_99"]}


def to_multi_frame(study, order, positions: bool) -> None:
    """The study's slices as one multi-frame file, frames in `order` (slice
    numbers), with a position per frame or none; the single files removed."""
    from pydicom.sequence import Sequence

    slices = [pydicom.dcmread(study / f"{n}.dcm") for n in order]
    pixels = b"".join(
        np.ascontiguousarray(s.pixel_array.astype(np.int16)).tobytes() for s in slices
    )
    merged = pydicom.dcmread(study / f"{order[0]}.dcm")
    merged.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    merged.NumberOfFrames = len(slices)
    merged.PixelData = pixels
    del merged.ImagePositionPatient
    if positions:
        frames = []
        for s in slices:
            item, plane = pydicom.Dataset(), pydicom.Dataset()
            plane.ImagePositionPatient = s.ImagePositionPatient
            item.PlanePositionSequence = Sequence([plane])
            frames.append(item)
        shared, orientation = pydicom.Dataset(), pydicom.Dataset()
        orientation.ImageOrientationPatient = slices[0].ImageOrientationPatient
        shared.PlaneOrientationSequence = Sequence([orientation])
        merged.PerFrameFunctionalGroupsSequence = Sequence(frames)
        merged.SharedFunctionalGroupsSequence = Sequence([shared])
    for path in study.glob("*.dcm"):
        path.unlink()
    merged.save_as(study / "mf.dcm", enforce_file_format=True)


@pytest.mark.parametrize("positions", [True, False])
def test_a_multi_frame_file_is_expanded_into_its_slices(tiny, tmp_path, positions):
    from competition.data.index import build_index
    from competition.data.preprocess import load_input
    from competition.data.sources import open_source
    from competition.data.units import unit_slices

    root, _, _ = tiny
    copy = tmp_path / "competition"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("cache", "index*", "folds*"))
    config = load_config(CONFIG, [f"data.root={copy}", *TINY, "data.source=files"])
    study = sorted((copy / "train_images").iterdir())[0]
    by_z = sorted(study.glob("*.dcm"), key=lambda p: pydicom.dcmread(p).ImagePositionPatient[2])
    expected = [load_input(p, config.pixels) for p in by_z]  # bottom to top
    numbers = [int(p.stem) for p in by_z]
    shuffled = np.random.default_rng(0).permutation(numbers) if positions else numbers
    to_multi_frame(study, shuffled, positions)
    index = build_index(config.layout, 1, ("train",))
    rows = index[index.path.str.contains(f"{study.name}/mf.dcm", regex=False)]
    assert len(rows) == len(numbers) and rows.readable.all()
    assert rows.frame.tolist() == list(range(len(numbers)))
    assert rows.z.notna().all() == positions
    units = unit_slices(config.task, index, "train")
    order = [int(i.rsplit(".f", 1)[1]) for i in units.slices[study.name]]
    # with positions: ordered by them whatever the file's order; without: the file's order
    assert [shuffled[k] for k in order] == numbers
    from competition.data.units import even_picks

    stack = open_source(config.inputs, "train").load(study.name)
    picks = even_picks(len(numbers), config.series.slices)
    for got, pick in zip(stack, picks, strict=True):
        np.testing.assert_array_equal(got, expected[pick])
    from competition.data.cache.build import build
    from competition.fileio import write_csv_atomic

    write_csv_atomic(config.layout.index_csv, index)  # the cache builds from the index
    cached = load_config(CONFIG, [f"data.root={copy}", *TINY, "data.source=cache"])
    build(cached.cache, ["train"], 1)
    source = open_source(cached.inputs, "train")
    np.testing.assert_array_equal(source.take(source.locate([study.name]))[0], stack)


def test_the_position_is_taken_along_the_slice_normal():
    from competition.data.dicom import _z_position

    sagittal = pydicom.Dataset()
    sagittal.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # rows along y, columns down z
    positions = [[x, -100.0, 50.0 - x] for x in (-12.0, 3.0, 7.5)]  # z decreasing as x grows
    found = []
    for position in positions:
        sagittal.ImagePositionPatient = position
        found.append(_z_position(sagittal))
    # the normal is row x column = -x: the slices are ordered along x, not by their z
    assert found == pytest.approx([12.0, -3.0, -7.5])
    axial = pydicom.Dataset()
    axial.ImagePositionPatient = [0, 0, 42.5]
    assert _z_position(axial) == 42.5  # no orientation: z as it is


def test_even_picks_cover_the_unit_first_to_last():
    assert even_picks(30, 4).tolist() == [0, 10, 19, 29]
    assert even_picks(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # short: slices repeat
    assert even_picks(1, 3).tolist() == [0, 0, 0]


def test_native_spacing_takes_consecutive_slices_from_the_middle(tiny):
    """series.spacing native: T neighbouring slices at the unit's own
    spacing (a long unit cropped about its middle, a short one edge-padded)."""
    from competition.data.sources import open_source
    from competition.data.units import native_picks

    assert native_picks(10, 4).tolist() == [3, 4, 5, 6]
    assert native_picks(3, 6).tolist() == [0, 0, 0, 1, 2, 2]
    root, _, _ = tiny
    settings = [f"data.root={root}", *TINY, "data.source=files"]
    native = open_source(load_config(CONFIG, [*settings, "series.spacing=native"]).inputs, "train")
    even = open_source(load_config(CONFIG, settings).inputs, "train")
    unit = native.ids[0]
    slices = native.units.slices[unit]
    start = (len(slices) - 6) // 2
    assert native.picks[0].tolist() == slices[start : start + 6].tolist()
    assert even.picks[0].tolist() == slices[even_picks(len(slices), 6)].tolist()
    np.testing.assert_array_equal(native.load(unit)[0], even.inner.load(str(slices[start])))


def test_a_units_stack_is_the_same_from_the_cache_and_the_files(tiny):
    from competition.data.cache.build import build
    from competition.data.sources import open_source

    root, _, _ = tiny
    config = load_config(CONFIG, [f"data.root={root}", *TINY, "data.source=cache"])
    build(config.cache, ["train"], 1)
    cached = open_source(config.inputs, "train")
    files = open_source(load_config(CONFIG, [f"data.root={root}", *TINY,
                                              "data.source=files"]).inputs, "train")  # fmt: skip
    units = cached.ids[:4]
    rows = cached.locate(units)
    assert (rows >= 0).all() and cached.shape == (6, 32, 32, 3)
    batch = cached.take(rows)  # one gather for the whole batch
    for i, unit in enumerate(units):
        np.testing.assert_array_equal(batch[i], files.load(unit))


def test_a_study_level_task_predicts_and_validates_through_the_cli(tiny, tmp_path):
    root, runs, args = tiny
    args = [*args, *overrides(f"predict.submissions_dir={tmp_path}")]
    predicted = cli("predict", "--folds", "0", *args, timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "Score on" in predicted.stdout
    checked = cli("validate", str(tmp_path / "submission.csv"), *args, timeout=120)
    assert checked.returncode == 0 and checked.stdout.startswith("ok: "), checked.stderr
    submission = pd.read_csv(tmp_path / "submission.csv", dtype={"row_id": str})
    sample = pd.read_csv(root / "sample_submission.csv", dtype={"row_id": str})
    assert submission.row_id.tolist() == sample.row_id.tolist()
    parts = submission.row_id.str.extract(r"^(?P<study>.+)_(?P<label>patient_overall|C[1-7])$")
    wide = submission.join(parts).pivot(index="study", columns="label", values="fractured")
    vertebrae = wide[[f"C{k}" for k in range(1, 8)]].max(axis=1)
    assert (wide.patient_overall >= vertebrae - 1e-9).all()  # the derived step
    oof = pd.read_csv(runs / "rsna_cervical_2022_synthetic" / "fold0" / "oof.csv", dtype=str)
    folds = pd.read_csv(root / "folds.csv", dtype=str)
    assert set(oof.image_id) == set(folds.image_id[folds.fold == "0"])  # one row per study


LEARN = ("synth.patients=240", "synth.slices_per_series=[20, 28]", "series.slices=16",
         "folds.k=4", "train.epochs=9", "train.workers=1")  # fmt: skip


@pytest.mark.slow
def test_it_learns_the_vertebra_and_a_unit_level_permutation_scores_at_the_baseline(tmp_path):
    """The same stand-in trained twice: as it is, and with train.csv's rows
    shuffled across studies (every label kept, tied to the wrong study)."""
    root, runs = tmp_path / "competition", tmp_path / "runs"
    config = load_config(CONFIG, [f"data.root={root}", *LEARN])
    synthesize(config, workers=2)
    ratios = {}
    for name in ("labels", "permuted"):
        if name == "permuted":
            train = pd.read_csv(root / "train.csv", dtype=str)
            shuffled = train[LABELS].sample(frac=1, random_state=0).reset_index(drop=True)
            train[LABELS] = shuffled
            train.to_csv(root / "train.csv", index=False)
        args = ["--config", str(CONFIG), *overrides(f"data.root={root}", f"runs_dir={runs}",
                                                    f"experiment={name}", *LEARN)]  # fmt: skip
        result = cli("train", "--fold", "0", *args, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = json.loads((runs / name / "fold0" / "metrics.json").read_text())
        ratios[name] = metrics["score"] / metrics["baseline_score"]
    assert ratios["labels"] < 0.5, ratios  # measured at 9 epochs: 0.196, permuted 0.987
    assert ratios["permuted"] > 0.9, ratios


def test_bad_slices_and_studies_are_reported_and_left_out(tiny, tmp_path):
    root, runs, _ = tiny
    copy = tmp_path / "competition"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("cache", "index*", "folds*"))
    train = sorted((copy / "train_images").iterdir())
    (train[0] / "3.dcm").write_bytes(b"DICM broken")  # one bad slice: the study stays
    for path in train[1].glob("*.dcm"):  # every slice bad: the study is left out
        path.write_bytes(b"")
    test = sorted((copy / "test_images").iterdir())
    for path in test[0].glob("*.dcm"):  # a test study with no slice: the fallback
        path.write_bytes(b"")
    settings = (f"data.root={copy}", f"runs_dir={tmp_path / 'r'}",
                f"predict.submissions_dir={tmp_path}", *TINY)  # fmt: skip
    args = ["--config", str(CONFIG), *overrides(*settings)]
    trained = cli("train", "--fold", "0", *args, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    excluded = pd.read_csv(copy / "folds_excluded.csv", dtype=str)
    row = excluded[excluded.image_id == train[1].name]
    assert len(row) == 1 and "no readable slice" in row.reason.iloc[0]
    assert train[0].name in set(pd.read_csv(copy / "folds.csv", dtype=str).image_id)
    predicted = cli("predict", "--folds", "0", *args, timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    summary = json.loads(
        (tmp_path / "r" / "rsna_cervical_2022_synthetic" / "predict.json").read_text()
    )
    assert list(summary["unreadable"]) == [test[0].name]
    assert "no readable slice" in summary["unreadable"][test[0].name]
    checked = cli("validate", str(tmp_path / "submission.csv"), *args, timeout=120)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.slow
def test_the_kernel_predicts_every_test_study_offline(tiny, tmp_path):
    """The bundle's kernel in a Kaggle-like environment (the kit absent, the
    network down): the test studies from test.csv, a row per study and label."""
    from test_kaggle import PYTHON, USER, kaggle_image_python, mount_competition, run_kernel

    from competition.inference.submission import validate_file
    from competition.kaggle import bundle as kaggle

    root, runs, _ = tiny
    settings = [f"data.root={root}", f"runs_dir={runs}", *TINY, f"kaggle.username={USER}",
                f"kaggle.build_dir={tmp_path / 'build'}", f"kaggle.python='{PYTHON}'",
                "kaggle.time_batches=0"]  # fmt: skip
    config = load_config(CONFIG, settings)
    summary = kaggle.build(config)
    kaggle_root = tmp_path / "kaggle"
    dataset = kaggle_root / "input" / summary["dataset"].split("/")[1]
    shutil.copytree(Path(summary["folder"]) / "dataset", dataset)
    mount_competition(root, kaggle_root / "input" / config.kaggle.competition, config)
    (kaggle_root / "working").mkdir()
    python = kaggle_image_python(tmp_path / "venv")
    done = run_kernel(python, Path(summary["folder"]) / "kernel" / "submit.py", kaggle_root,
                      tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sample = root / "sample_submission.csv"
    problems, rows = validate_file(config.task, kaggle_root / "working" / "submission.csv", sample)
    assert problems == [] and rows == len(pd.read_csv(sample))


@pytest.mark.slow
def test_the_kernel_serves_predict_per_series_to_the_evaluation_api_offline(
    tiny, tmp_path, monkeypatch
):
    """kaggle.form evaluation_api: the competition's server (a local stand-in
    of its gateway) calls predict(series_path) once per test study; the
    answers are what make predict gives those studies."""
    from test_kaggle import PYTHON, USER, kaggle_image_python, run_kernel

    from competition.inference.submission import postprocess
    from competition.kaggle import bundle as kaggle

    root, runs, args = tiny
    elsewhere = overrides(f"predict.submissions_dir={tmp_path / 's'}")
    predicted = cli("predict", "--folds", "0", *args, *elsewhere, timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    settings = [f"data.root={root}", f"runs_dir={runs}", *TINY, f"kaggle.username={USER}",
                f"kaggle.build_dir={tmp_path / 'build'}", f"kaggle.python='{PYTHON}'",
                "kaggle.time_batches=0", "kaggle.form=evaluation_api",
                "predict.folds=[0]"]  # fmt: skip
    config = load_config(CONFIG, settings)
    summary = kaggle.build(config)
    kaggle_root = tmp_path / "kaggle"
    shutil.copytree(Path(summary["folder"]) / "dataset",
                    kaggle_root / "input" / summary["dataset"].split("/")[1])  # fmt: skip
    competition = kaggle_root / "input" / config.kaggle.competition
    shutil.copytree(REPO / "tests" / "evaluation_api", competition)
    shutil.copytree(root / "test_images", competition / "test_images")
    (kaggle_root / "working").mkdir()
    python = kaggle_image_python(tmp_path / "venv")
    monkeypatch.setenv("GATEWAY_TEST_DIR", "test_images")  # the gateway's test folder
    done = run_kernel(python, Path(summary["folder"]) / "kernel" / "submit.py", kaggle_root,
                      tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"s per series .* the 12-hour limit holds about [\d,]+ series", done.stdout)
    served = pd.read_csv(kaggle_root / "working" / "submission.csv", dtype=str)
    served = served.set_index("SeriesInstanceUID").astype(float)
    expected = pd.read_csv(runs / "rsna_cervical_2022_synthetic" / "test_preds.csv",
                           dtype={"image_id": str}).set_index("image_id")  # fmt: skip
    assert sorted(served.index) == sorted(expected.index)
    final = postprocess(config.task, expected.loc[served.index, LABELS].to_numpy())
    np.testing.assert_allclose(served[LABELS].to_numpy(), final, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["task.unit.by=dicom"], "'task.unit.key' must be one of PatientID"),
        (["task.unit.key=PatientID"], "'task.unit.key' must be null when task.unit.by is folder"),
        (["task.unit.by=csv"], "'task.unit.csv' and task.unit.key must both be set"),
        (
            ["task.unit.by=csv", "task.unit.csv=m.csv", "task.unit.key=Nope"],
            "'task.unit.key' must be a field of task.images.path or one of PatientID",
        ),
        (["task.unit.csv=m.csv"], "'task.unit.csv' is read only when task.unit.by is csv"),
        (
            ["task.images.path={split_dir}/{StudyInstanceUID}.dcm"],
            "must name a folder level and the file for a study-level task",
        ),
        (["augment=[{RandomRotation: {factor: 0.1}}]"], "can hold only RandomFlip for a study"),
        (["task.unit.level=image", "kaggle.form=evaluation_api"], "needs a series- or study-level"),
        (["kaggle.form=evaluation_api", "kaggle.inference_server=serve"], "expects module.Class"),
    ],
)
def test_a_unit_spec_that_does_not_fit_names_the_key(change, message):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG, change)
    assert message in str(info.value)


def hand_made_cervical(real_series, root: Path) -> dict[str, list[str]]:
    """A folder in the Cervical download's layout that the generator did not
    write: the 32 real head-CT slices (512 px, 12-bit, a gantry tilt, no
    InstanceNumber) as six studies of five, each study's PatientID and UIDs
    its own, files numbered against their order for half of them; train.csv,
    test.csv and sample_submission.csv as Kaggle ships them. Returns each
    study's source files in body-axis order."""
    from competition.data.dicom import lenient_uids

    files = sorted((real_series / "stage_2_test").glob("*.dcm"))[:30]
    with lenient_uids():
        by_z = sorted(files, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
        studies = {}
        for s in range(6):
            study = f"1.2.826.0.1.3680043.{9000 + s}"
            split = "test_images" if s >= 4 else "train_images"
            chosen = by_z[s::6]  # five slices spread over the head
            for k, path in enumerate(chosen):
                ds = pydicom.dcmread(path)
                ds.PatientID, ds.StudyInstanceUID = f"P{s}", study
                number = len(chosen) - k if s % 2 else k + 1  # odd studies: top first
                (root / split / study).mkdir(parents=True, exist_ok=True)
                ds.save_as(root / split / study / f"{number}.dcm")
            studies[study] = [p.name for p in chosen]
    rows = [[s, *(np.arange(8) == i % 2).astype(int)] for i, s in enumerate(list(studies)[:4])]
    train = pd.DataFrame(rows, columns=["StudyInstanceUID", *LABELS])
    train.to_csv(root / "train.csv", index=False)
    tests = list(studies)[4:]
    long = [(s, label, f"{s}_{label}") for s in tests for label in LABELS]
    pd.DataFrame(long, columns=["StudyInstanceUID", "prediction_type", "row_id"]).to_csv(
        root / "test.csv", index=False
    )
    pd.DataFrame({"row_id": [r for *_, r in long], "fractured": 0.5}).to_csv(
        root / "sample_submission.csv", index=False
    )
    return studies


def test_a_hand_made_folder_of_real_slices_in_the_cervical_layout(real_series, tmp_path):
    """The preset on files the kit did not write: indexed, stacked in
    position order along the tilted slice normal, trained, predicted and
    validated through the CLI."""
    from competition.data.index import build_index
    from competition.data.units import unit_slices

    root = tmp_path / "competition"
    studies = hand_made_cervical(real_series, root)
    settings = (f"data.root={root}", f"runs_dir={tmp_path / 'runs'}", "synth.generate=false",
                "preprocess.image_size=32", "series.slices=4", "folds.k=2", "train.epochs=1",
                "train.batch_size=2", "train.workers=1",
                f"predict.submissions_dir={tmp_path}")  # fmt: skip
    config = load_config(CONFIG, list(settings))
    units = unit_slices(config.task, build_index(config.layout, 1), "train", root)
    for study in list(studies)[:4]:  # along the tilted axis, whatever the file names say
        assert len(units.slices[study]) == 5
        z = [float(pydicom.dcmread(root / "train_images" / study / f"{i.rsplit('_', 1)[1]}.dcm")
                   .ImagePositionPatient[2]) for i in units.slices[study]]  # fmt: skip
        assert z == sorted(z)
    args = ["--config", str(CONFIG), *overrides(*settings)]
    for command in (["train", "--fold", "0"], ["predict", "--folds", "0"]):
        done = cli(*command, *args, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    checked = cli("validate", str(tmp_path / "submission.csv"), *args, timeout=120)
    assert checked.returncode == 0 and checked.stdout.startswith("ok: 16 rows"), checked.stdout


def test_long_labels_whose_ids_join_the_unit_and_the_label(tiny, tmp_path):
    """A label CSV of rows <study>_<label>,value (the long form): read into
    one row per study, equal to the wide train.csv, and trained on."""
    from competition.data.labels import read_labels

    root, _, _ = tiny
    copy = tmp_path / "competition"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("cache", "index*", "folds*"))
    wide = pd.read_csv(copy / "train.csv", dtype=str).set_index("StudyInstanceUID")
    long = wide.reset_index().melt(id_vars="StudyInstanceUID", var_name="label",
                                   value_name="fractured")  # fmt: skip
    long["row_id"] = long.StudyInstanceUID + "_" + long.label
    long[["row_id", "fractured"]].sample(frac=1, random_state=0).to_csv(
        copy / "train_long.csv", index=False
    )
    settings = [f"data.root={copy}", *TINY, "task.labels.format=long",
                "task.labels.csv=train_long.csv", "task.labels.id_column=row_id",
                "task.labels.value_column=fractured",
                "task.images.path={split_dir}/{image_id}/{slice}.dcm",
                "task.images.test_list=sample", f"runs_dir={tmp_path / 'runs'}"]  # fmt: skip
    config = load_config(CONFIG, settings)
    labels = read_labels(config.task, config.layout.train_csv)
    assert sorted(labels.index) == sorted(wide.index)
    np.testing.assert_array_equal(labels.loc[wide.index, LABELS].astype(float),
                                  wide[LABELS].astype(float))  # fmt: skip
    trained = cli("train", "--fold", "0", "--config", str(CONFIG), *overrides(*settings),
                  timeout=600)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    folds = pd.read_csv(copy / "folds.csv", dtype=str)
    assert sorted(folds.image_id) == sorted(wide.index)  # one row per study
