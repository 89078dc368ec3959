from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.data.labels import LabelError, read_labels
from competition.ids import UnsafeIdError

from helpers import REPO

RSNA = load_config(REPO / "configs" / "rsna_ich.yaml").task
COLUMNS = RSNA.label_columns


def long_rows(labels: dict[str, list[int]]) -> pd.DataFrame:
    rows = [
        (f"{image}_{c}", str(v))
        for image, values in labels.items()
        for c, v in zip(COLUMNS, values, strict=True)
    ]
    return pd.DataFrame(rows, columns=["ID", "Label"])


GOOD = {"ID_000000aaa": [0, 0, 0, 0, 1, 1], "ID_000000bbb": [0, 0, 0, 0, 0, 0]}


def write(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_long_rows_become_one_row_per_image(tmp_path):
    wide = read_labels(RSNA, write(long_rows(GOOD), tmp_path / "train.csv"))
    assert list(wide.columns) == COLUMNS and wide.index.name == "image_id"
    assert wide.loc["ID_000000aaa"].tolist() == [0, 0, 0, 0, 1, 1]
    assert wide.dtypes.unique().tolist() == [np.int8]


def test_a_command_reads_the_file_once_and_sees_it_change(tmp_path, monkeypatch):
    from competition.data import labels

    path = write(long_rows(GOOD), tmp_path / "train.csv")
    first = read_labels(RSNA, path)
    first.loc["ID_000000aaa", "any"] = 0  # the caller's copy, not the kept one
    reads = []
    monkeypatch.setattr(labels, "_read_labels", lambda *a: reads.append(a) or 1 / 0)
    again = read_labels(RSNA, path)  # from memory: the reader is not called
    assert reads == [] and again.loc["ID_000000aaa", "any"] == 1
    monkeypatch.undo()
    write(long_rows({**GOOD, "ID_000000ccc": [1, 0, 0, 0, 0, 1]}), tmp_path / "train.csv")
    assert len(read_labels(RSNA, path)) == 3  # a changed file is read again


def test_exact_duplicates_are_dropped(tmp_path):
    frame = long_rows(GOOD)
    path = write(pd.concat([frame, frame.iloc[:3]]), tmp_path / "train.csv")
    assert len(read_labels(RSNA, path)) == 2


def test_derived_column_is_computed_when_the_file_lacks_it(tmp_path):
    frame = long_rows(GOOD)
    frame = frame[~frame.ID.str.endswith("_any")]
    wide = read_labels(RSNA, write(frame, tmp_path / "train.csv"))
    assert wide["any"].tolist() == [1, 0] and list(wide.columns) == COLUMNS


def with_row(index: int, **changes) -> pd.DataFrame:
    frame = long_rows(GOOD)
    for column, value in changes.items():
        frame.loc[index, column] = value
    return frame


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (with_row(3, ID="ID_000000aaa-subarachnoid"), "Malformed: line 5 (ID_000000aaa-sub"),
        (with_row(3, ID="ID_000000aaa_bleed"), "unknown label (expected one of epidural"),
        (with_row(2, Label="2"), "must be one of 0, 1. Received: line 4 (ID_000000aaa_intrav"),
        (with_row(2, Label=""), "labels of intraventricular must be one of 0, 1"),
        (with_row(2, Label="nan"), "labels of intraventricular must be one of 0, 1"),
        (long_rows(GOOD).drop(index=[7]), "miss some. Missing: {'ID_000000bbb': ['intrapar"),
    ],
)
def test_bad_rows_are_named(tmp_path, frame, message):
    path = write(frame, tmp_path / "train.csv")
    with pytest.raises(LabelError) as info:
        read_labels(RSNA, path)
    assert message in str(info.value) and path in str(info.value)


def test_conflicting_duplicates_are_an_error(tmp_path):
    frame = long_rows(GOOD)
    conflict = frame.iloc[[4]].assign(Label="0")
    path = write(pd.concat([frame, conflict], ignore_index=True), tmp_path / "train.csv")
    with pytest.raises(LabelError, match="different labels: line 6 .*line 14"):
        read_labels(RSNA, path)


def test_missing_columns(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("Image,Label\nID_1_any,0\n")
    with pytest.raises(
        LabelError, match=r"expected a CSV file with columns ID,Label. Missing: \['ID'\]"
    ):
        read_labels(RSNA, path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No label file at"),
        (b"", "expected a CSV file with columns ID,Label"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01", "not a text CSV file"),
        (b'ID,Label\n"ID_1_any,0\n', "could not be read as a CSV file"),
    ],
)
def test_unreadable_label_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "stage_2_train.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LabelError) as info:
        read_labels(RSNA, path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_an_id_pattern_that_lets_a_path_through_is_still_refused(tmp_path):
    task = load_config(
        REPO / "configs" / "rsna_ich.yaml",
        ["task.labels.id_pattern=(?P<image_id>.+)_(?P<label>[a-z]+)"],
    ).task
    frame = long_rows({"../etc/ID_1": [0] * 6})
    with pytest.raises(UnsafeIdError, match="'../etc/ID_1'"):
        read_labels(task, write(frame, tmp_path / "train.csv"))


# --- wide CSVs ------------------------------------------------------------------------

WIDE = load_config(
    REPO / "configs" / "small.yaml",
    [
        "task.labels.format=wide",
        "task.labels.id_column=image_name",
        "task.labels.derived=[]",
        "task.images.path={split_dir}/{patient}/{image_name}.dcm",
        "task.grouping.by=column",
        "task.grouping.key=patient",
        "task.heads=[{name: grade, kind: ordinal, columns: [grade], classes: [0, 1, 2]},"
        " {name: findings, kind: multilabel, columns: [a, b]}]",
        "task.metric.head=findings",
        "task.stratify=grade",
        "task.submission.layout=wide",
        "task.submission.postprocess=[clip]",
    ],
).task


def test_wide_rows_keep_the_labels_and_the_columns_the_task_names(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(
        "image_name,patient,grade,a,b,unused\nimg_1,p1,2,0,1,x\nimg_2,p1,0,1,1,y\nimg_1,p1,2,0,1,x\n"
    )
    wide = read_labels(WIDE, path)
    assert wide.index.tolist() == ["img_1", "img_2"]  # the exact repeat dropped
    assert wide["grade"].tolist() == [2, 0] and wide["grade"].dtype == np.int64
    assert wide["a"].dtype == np.int8 and wide["patient"].tolist() == ["p1", "p1"]
    assert "unused" not in wide
    np.testing.assert_array_equal(WIDE.targets(wide), [[2, 0, 1], [0, 1, 1]])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "img_1,p1,3,0,1\n",
            "labels of grade must be one of 0, 1, 2. Received: line 2 (img_1='3')",
        ),
        ("img_1,p1,1,0,0.5\n", "labels of b must be one of 0, 1. Received: line 2"),
        (
            "img_1,p1,1,0,1\nimg_1,p1,2,0,1\n",
            "IDs repeat with other values: line 2 (img_1), line 3",
        ),
        ("../x,p1,1,0,1\n", "plain file names"),
    ],
)
def test_wide_rows_that_do_not_fit_are_named(tmp_path, rows, message):
    path = tmp_path / "train.csv"
    path.write_text("image_name,patient,grade,a,b\n" + rows)
    with pytest.raises((LabelError, UnsafeIdError)) as info:
        read_labels(WIDE, path)
    assert message in str(info.value)
