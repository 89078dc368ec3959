from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from competition.labels import SUBTYPES, LabelError, long_to_wide, read_labels, wide_to_long


def long_rows(labels: dict[str, list[int]]) -> pd.DataFrame:
    rows = [
        (f"{image}_{s}", str(v))
        for image, values in labels.items()
        for s, v in zip(SUBTYPES, values, strict=True)
    ]
    return pd.DataFrame(rows, columns=["ID", "Label"])


GOOD = {"ID_000000aaa": [0, 0, 0, 0, 1, 1], "ID_000000bbb": [0, 0, 0, 0, 0, 0]}


def test_long_to_wide_and_back():
    wide = long_to_wide(long_rows(GOOD))
    assert list(wide.columns) == list(SUBTYPES)
    assert wide.loc["ID_000000aaa"].tolist() == [0, 0, 0, 0, 1, 1]
    assert wide.dtypes.unique().tolist() == [np.int8]
    back = wide_to_long(wide)
    assert back["ID"].tolist()[:2] == ["ID_000000aaa_epidural", "ID_000000aaa_intraparenchymal"]
    pd.testing.assert_frame_equal(long_to_wide(back.astype(str)), wide)


def test_exact_duplicates_are_dropped(tmp_path):
    frame = long_rows(GOOD)
    path = tmp_path / "train.csv"
    pd.concat([frame, frame.iloc[:3]]).to_csv(path, index=False)
    assert len(read_labels(path)) == 2


def with_row(index: int, **changes) -> pd.DataFrame:
    frame = long_rows(GOOD)
    for column, value in changes.items():
        frame.loc[index, column] = value
    return frame


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (with_row(3, ID="ID_000000aaa-subarachnoid"), "Malformed: line 5 (ID_000000aaa-sub"),
        (with_row(3, ID="ID_000000aaa_bleed"), "unknown subtype"),
        (with_row(2, Label="2"), "labels must be 0 or 1. Received: line 4"),
        (with_row(2, Label=""), "labels must be 0 or 1"),
        (with_row(2, Label="nan"), "labels must be 0 or 1"),
        (long_rows(GOOD).drop(index=[7]), "miss some. Missing: {'ID_000000bbb': ['intrapar"),
    ],
)
def test_bad_rows_are_named(frame, message):
    with pytest.raises(LabelError) as info:
        long_to_wide(frame, source="train.csv")
    assert message in str(info.value) and "train.csv" in str(info.value)


def test_conflicting_duplicates_are_an_error():
    frame = long_rows(GOOD)
    conflict = frame.iloc[[4]].assign(Label="0")
    with pytest.raises(LabelError, match="different labels: line 6 .*line 14"):
        long_to_wide(pd.concat([frame, conflict], ignore_index=True), source="train.csv")


def test_missing_columns(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("Image,Label\nID_1_any,0\n")
    with pytest.raises(LabelError, match=r"expected columns ID,Label. Missing: \['ID'\]"):
        read_labels(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No label file at"),
        (b"", "could not be read as CSV (EmptyDataError"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01", "could not be read as CSV"),
        (b'ID,Label\n"ID_1_any,0\n', "could not be read as CSV (ParserError"),
    ],
)
def test_unreadable_label_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "stage_2_train.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LabelError) as info:
        read_labels(path)
    assert str(path) in str(info.value) and message in str(info.value)
