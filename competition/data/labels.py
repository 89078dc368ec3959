"""The label table: the task's training CSV, long or wide, -> one row per image.

`read_labels(task, path)` returns a DataFrame indexed by image ID (index
name `image_id`) holding the task's label columns (numbers; a derived column
the CSV lacks is computed from its declaration) and, for a wide CSV, the
other columns the task names (path template fields, the group column, the
stratify column) as text.

- long: one row per image and label (`<image>_<label>,value`); the task's
  ID pattern splits the ID. Exact duplicate rows are dropped (real
  competition files have them).
- wide: one row per image, an ID column and the label columns.

Every problem is an error naming the file and the CSV lines: a malformed
ID, an unknown label, a value the head does not allow (empty, `nan`, 2, a
class it does not list), the same image or ID with different values, an
image missing some labels, an ID that is not a plain file name. At the real
RSNA size (4.5 million rows) this reads in about 2.5 s (pyarrow's reader and
RE2), where a per-row pandas parse took 25 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from competition.data import csvfile
from competition.data.csvfile import as_strings, column, lines, numbers
from competition.errors import ConfigError, KitError
from competition.ids import check_image_ids
from competition.task import TaskSpec, needed_label_columns


class LabelError(KitError, ValueError):
    """A label file that does not fit the task's format."""


def _allowed(task: TaskSpec) -> dict[str, np.ndarray]:
    """Label column -> the values its head allows (text for text classes)."""
    allowed = {
        c: np.asarray(head.allowed_values(), object if head.text_classes else np.float64)
        for head in task.heads
        for c in head.columns
    }
    return allowed | {name: np.array([0.0, 1.0]) for name in task.derived_names}


def _empty(text: np.ndarray, task: TaskSpec) -> np.ndarray:
    """Cells that are missing labels the task masks (empty), none otherwise."""
    if task.labels.missing != "mask":
        return np.zeros(len(text), bool)
    return np.array([not str(v).strip() for v in text], bool)


def _check_values(values: np.ndarray, bad: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Rows whose value is not a number the column allows (`bad`: not numbers)."""
    outside = ~np.isin(values, allowed)
    outside[bad] = True
    return np.flatnonzero(outside)


def _values_error(source: str, name: str, allowed: np.ndarray, rows, *columns) -> LabelError:
    listed = ", ".join(v if isinstance(v, str) else f"{v:g}" for v in allowed)
    return LabelError(
        f"{source}: labels of {name} must be one of {listed}. Received: {lines(rows, *columns)}"
    )


def _derive(task: TaskSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Derived columns the file lacks, computed from their declaration."""
    for derived in task.labels.derived:
        if derived.name not in frame:
            frame[derived.name] = frame[derived.max_of].max(axis=1)
    return frame


def _checked_ids(ids: pa.Array, source: str) -> pa.Array:
    safe = pc.match_substring_regex(ids, r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
    if not pc.all(safe).as_py():
        bad = pc.filter(ids, pc.invert(safe)).to_pylist()
        check_image_ids(bad, source)  # raises, naming them
    return ids


# --- long: one row per image and label ----------------------------------------------


def _split_ids(task: TaskSpec, ids: pa.Array, source: str) -> tuple[pa.Array, pa.Array]:
    """(image part, label part) of each ID, by the task's pattern."""
    pattern = f"^(?:{task.labels.id_pattern})$"
    try:
        parts = pc.extract_regex(ids, pattern)
    except pa.ArrowInvalid as exc:
        raise ConfigError(
            f"Config key 'task.labels.id_pattern' is not a pattern the CSV reader (RE2) "
            f"accepts ({exc}). Received: {task.labels.id_pattern!r}"
        ) from None
    malformed = np.flatnonzero(pc.is_null(parts).to_numpy(zero_copy_only=False))
    if len(malformed):
        raise LabelError(
            f"{source}: expected IDs matching {task.labels.id_pattern!r} "
            f"(task.labels.id_pattern). Malformed: {lines(malformed, as_strings(ids))}"
        )
    return parts.field("image_id"), parts.field("label")


def _long_table(task: TaskSpec, table: pa.Table, source: str) -> pd.DataFrame:
    spec = task.labels
    ids, raw = column(table, spec.id_column), column(table, spec.value_column)
    images, labels = _split_ids(task, ids, source)
    allowed = _allowed(task)
    label_dict = pc.dictionary_encode(labels)
    label_names = label_dict.dictionary.to_pylist()
    label_codes = label_dict.indices.to_numpy()
    unknown = [i for i, name in enumerate(label_names) if name not in allowed]
    if unknown:
        rows = np.flatnonzero(np.isin(label_codes, unknown))
        raise LabelError(
            f"{source}: unknown label (expected one of {', '.join(allowed)}): "
            f"{lines(rows, as_strings(ids), as_strings(raw))}"
        )
    values, bad = numbers(raw)
    wrong = np.zeros(len(values), bool)
    wrong[bad] = True
    for code, name in enumerate(label_names):
        here = label_codes == code
        wrong[here] |= ~np.isin(values[here], allowed[name])
    if wrong.any():
        code = label_codes[np.argmax(wrong)]
        rows = np.flatnonzero(wrong & (label_codes == code))
        name = label_names[code]
        raise _values_error(source, name, allowed[name], rows, as_strings(ids), as_strings(raw))
    image_dict = pc.dictionary_encode(images)
    image_codes = image_dict.indices.to_numpy()
    names = as_strings(_checked_ids(image_dict.dictionary, source))
    return _pivot(task, source, names, label_names, image_codes, label_codes, values, ids)


def _pivot(task, source, names, label_names, image_codes, label_codes, values, ids):
    """The (image, label) rows as one row per image, checking that every
    image has every label once (exact repeats aside)."""
    n_images, n_labels = len(names), len(label_names)
    key = image_codes.astype(np.int64) * n_labels + label_codes
    counts = np.bincount(key, minlength=n_images * n_labels)
    wide = np.full(n_images * n_labels, np.nan)
    wide[key] = values
    repeated = np.flatnonzero(counts[key] > 1)
    if len(repeated):  # exact duplicates are fine; the same ID with other values is not
        conflicting = repeated[values[repeated] != wide[key[repeated]]]
        if len(conflicting):
            clash = np.flatnonzero(np.isin(key, key[conflicting]))
            raise LabelError(
                f"{source}: the same ID has different labels: "
                f"{lines(clash, as_strings(ids), values)}"
            )
    frame = pd.DataFrame(
        wide.reshape(n_images, n_labels),
        index=pd.Index(names, name="image_id"),
        columns=label_names,
    )
    derived = set(task.derived_names)  # computed later when the file has none
    expected = [
        c
        for c in dict.fromkeys([*task.label_columns, *derived])
        if c in label_names or c not in derived
    ]
    frame = frame.reindex(columns=expected)
    incomplete = frame.isna().any(axis=1)
    if incomplete.any() and task.labels.missing != "mask":
        examples = {
            image: [c for c in frame.columns if pd.isna(frame.at[image, c])]
            for image in frame.index[incomplete][: csvfile.SHOWN]
        }
        raise LabelError(
            f"{source}: every image needs a row for each of {', '.join(frame.columns)}; "
            f"{int(incomplete.sum())} images miss some. Missing: {examples}"
        )
    return frame


# --- wide: one row per image ------------------------------------------------------


def _wide_table(task: TaskSpec, table: pa.Table, source: str) -> pd.DataFrame:
    spec = task.labels
    allowed = _allowed(task)
    text = {name: as_strings(column(table, name)) for name in table.column_names}
    ids = text[spec.id_column]
    keep = ~pd.DataFrame(text).duplicated().to_numpy()  # exact repeats of a row are dropped
    clash = pd.Series(ids[keep]).duplicated(keep=False).to_numpy()
    if clash.any():
        raise LabelError(
            f"{source}: each image needs one row; these IDs repeat with other values: "
            f"{lines(np.flatnonzero(keep)[clash], ids)}"
        )
    out = pd.DataFrame(index=pd.Index(ids[keep], name="image_id"))
    for name, values_text in text.items():
        if name == spec.id_column:
            continue
        if name not in allowed:  # a path field, the group or stratify column
            out[name] = values_text[keep]
            continue
        empty = _empty(values_text, task)
        if allowed[name].dtype == object:  # text classes
            values = np.where(empty, np.nan, values_text).astype(object)
            wrong = np.flatnonzero(~np.isin(values_text, allowed[name]) & ~empty)
        else:
            values, bad = numbers(column(table, name))
            wrong = _check_values(values, bad, allowed[name])
            wrong = wrong[~empty[wrong]]
        if len(wrong):
            raise _values_error(source, name, allowed[name], wrong, ids, values_text)
        out[name] = values[keep]
    check_image_ids(out.index.tolist(), source)
    return out


_LAST: dict = {}  # the last file read: a command reads the label CSV once, not per stage


def read_labels(task: TaskSpec, path: str | Path) -> pd.DataFrame:
    """The task's label CSV as one row per image (see the module); read once
    per process while the file and the task's labels stay the same."""
    stat = Path(path).stat() if Path(path).is_file() else None
    key = (str(Path(path).resolve()), stat and (stat.st_mtime_ns, stat.st_size), repr(task))
    if _LAST.get("key") != key:
        _LAST.clear()
        _LAST.update(key=key, frame=_read_labels(task, path))
    return _LAST["frame"].copy()


def _read_labels(task: TaskSpec, path: str | Path) -> pd.DataFrame:
    source = str(path)
    spec = task.labels
    needed = list(needed_label_columns(task))
    try:
        table = csvfile.read_strings(path, needed, "label file")
    except csvfile.CsvError as exc:
        raise LabelError(str(exc)) from None
    frame = (
        _long_table(task, table, source)
        if spec.format == "long"
        else _wide_table(task, table, source)
    )
    frame = _derive(task, frame)
    for name, allowed in _allowed(task).items():  # 0/1 in a byte; class values as integers
        if allowed.dtype == object or frame[name].isna().any():
            continue  # text classes, and missing labels (NaN), stay as they are
        frame[name] = frame[name].astype(np.int8 if set(allowed) <= {0, 1} else np.int64)
    return frame
