from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from competition.data.folds import assign_folds, read_folds, usable_images, write_folds
from competition.data.index import MissingTableError, build_index, read_index
from competition.data.labels import read_labels
from competition.data.settings import FoldsConfig
from competition.errors import KitError
from competition.ids import UnsafeIdError
from competition.layout import Layout
from competition.task import ImagesSpec, TaskSpec

from conftest import small_config
from helpers import synthesize


def test_real_series_is_indexed_and_ordered_by_z(real_series, tmp_path):
    task = small_config(tmp_path).task
    test_dir = str(real_series / "stage_2_test")
    layout = Layout(tmp_path, replace(task, images=replace(task.images, test_dir=test_dir)))
    index = build_index(layout, workers=2)
    assert len(index) == 32 and index.readable.all() and (index.split == "test").all()
    assert (index.path == test_dir + "/" + index.image_id + ".dcm").all()
    assert index.series_id.nunique() == 1 and index.patient_id.iloc[0] == "ID_52c1ab5a"
    ordered = index.sort_values("slice_rank")
    assert ordered.slice_rank.tolist() == list(range(32))
    gaps = np.diff(ordered.z.to_numpy())
    assert (gaps > 4.5).all() and (gaps < 5.5).all()  # about 5.1 mm apart


def test_index_table_round_trips(small_competition):
    layout = small_competition.layout
    index = read_index(layout)
    assert index.readable.all() and set(index.split) == {"train", "test"}
    per_series = index.groupby("series_id").slice_rank.agg(["min", "max", "size"])
    assert (per_series["min"] == 0).all() and (per_series["max"] == per_series["size"] - 1).all()
    for _, series in index.groupby("series_id"):
        assert series.sort_values("slice_rank").z.is_monotonic_increasing


@pytest.fixture
def damaged_competition(tmp_path):
    """A small competition with files that cannot be used added to it."""
    config = small_config(tmp_path / "damaged", "synth.patients=8")
    synthesize(config)
    layout = config.layout
    train = sorted(layout.image_dir("train").glob("*.dcm"))
    data = train[0].read_bytes()
    train[0].write_bytes(data[: len(data) // 2])  # truncated
    train[1].write_text("not dicom")  # not DICOM
    shutil.copy(train[2], layout.image_dir("train") / "ID_0nolabel1.dcm")  # no labels
    return config, layout, train


def test_unreadable_files_are_listed_not_fatal(damaged_competition):
    config, layout, train = damaged_competition
    index = build_index(layout, workers=2)
    bad = index.set_index("image_id").loc[[train[0].stem, train[1].stem]]
    assert not bad.readable.any()
    assert "truncated pixel data" in bad.reason.iloc[0]
    assert "not a DICOM file" in bad.reason.iloc[1]
    assert index.readable.sum() == len(index) - 2


def test_folds_leave_out_unusable_images_with_reasons(damaged_competition):
    config, layout, train = damaged_competition
    from competition.data.index import write_index

    labels = read_labels(config.task, layout.train_csv)
    folds = write_folds(layout, labels, write_index(layout, workers=1), config.folds)
    excluded = pd.read_csv(layout.folds_excluded_csv).set_index("image_id")
    assert "truncated" in excluded.loc[train[0].stem, "reason"]
    assert excluded.loc["ID_0nolabel1", "reason"] == "image file without labels"
    assert not set(excluded.index) & set(folds.image_id)
    assert len(folds) == len(labels) - 2


def test_no_patient_in_two_folds_and_balanced_any(small_competition):
    layout = small_competition.layout
    folds = read_folds(layout)
    assert (folds.groupby("group").fold.nunique() == 1).all()
    patients = read_index(layout).set_index("image_id").loc[folds.image_id, "patient_id"]
    assert (folds.group.to_numpy() == patients.to_numpy()).all()  # grouped by PatientID
    assert sorted(folds.fold.unique()) == list(range(small_competition.folds.k))


def test_folds_are_deterministic_for_a_seed(small_competition):
    layout, task = small_competition.layout, small_competition.task
    usable, _ = usable_images(task, read_labels(task, layout.train_csv), read_index(layout))
    a = assign_folds(usable, FoldsConfig(k=3, seed=1))
    b = assign_folds(usable, FoldsConfig(k=3, seed=1))
    c = assign_folds(usable, FoldsConfig(k=3, seed=2))
    pd.testing.assert_frame_equal(a, b)
    assert not a.fold.equals(c.fold)


def test_more_folds_than_patients_is_a_clear_error(small_competition):
    layout, task = small_competition.layout, small_competition.task
    usable, _ = usable_images(task, read_labels(task, layout.train_csv), read_index(layout))
    with pytest.raises(KitError, match="folds.k=50 needs at least 50 groups"):
        assign_folds(usable, FoldsConfig(k=50))


def test_missing_tables_say_which_command_makes_them(tmp_path):
    layout = Layout(tmp_path, TaskSpec())
    with pytest.raises(MissingTableError, match="make index"):
        read_index(layout)
    with pytest.raises(MissingTableError, match="make folds"):
        read_folds(layout)


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs", "a/b", "..", ".hidden", "x\0y", ""])
def test_image_ids_that_could_escape_are_refused(bad):
    with pytest.raises(UnsafeIdError):
        Layout("data", TaskSpec()).image_path("train", bad)


def test_template_lists_and_reads_back_nested_files(tmp_path):
    task = TaskSpec(images=ImagesSpec(path="{split_dir}/{patient_id}/{image_id}.dcm"))
    layout = Layout(tmp_path, task)
    for patient, image in [("10116", "472095321"), ("10116", "1234"), ("2", "9")]:
        folder = tmp_path / "train" / patient
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{image}.dcm").write_bytes(b"x")
    (tmp_path / "train" / "stray.dcm").write_bytes(b"x")  # not in the template's shape
    from competition.data.index import list_images

    found = [(split, image, path) for _, split, image, path, _ in list_images(layout)]
    assert found == [
        ("train", "1234", "train/10116/1234.dcm"),
        ("train", "472095321", "train/10116/472095321.dcm"),
        ("train", "9", "train/2/9.dcm"),
    ]
    path = layout.image_path("train", "9", {"patient_id": "2"})
    assert path == tmp_path / "train" / "2" / "9.dcm"
    with pytest.raises(UnsafeIdError, match="path field 'patient_id'"):
        layout.image_path("train", "9", {"patient_id": ".."})


def test_files_removed_from_the_folder_after_indexing_are_noticed(tmp_path, capsys):
    from competition.pipeline.prepare import ensure_data

    config = small_config(tmp_path / "comp", "synth.patients=6")
    layout = ensure_data(config)
    before = read_index(layout)
    gone = before[before["split"] == "train"].iloc[0]
    (layout.root / gone["path"]).unlink()  # the user removes a file after the first run
    capsys.readouterr()
    ensure_data(config)
    said = capsys.readouterr().out
    assert "The image folders changed since" in said and "files then" in said
    after = read_index(layout)
    assert len(after) == len(before) - 1 and gone["image_id"] not in set(after["image_id"])
    folds = pd.read_csv(layout.folds_csv, dtype={"image_id": str})
    assert gone["image_id"] not in set(folds["image_id"])  # folds follow the new index
    capsys.readouterr()
    ensure_data(config)  # nothing changed since: nothing is redone
    assert "changed" not in capsys.readouterr().out
