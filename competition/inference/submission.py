"""The submission file, in the task's form: built on the sample submission's
rows (same rows, same order, same header), never on generated IDs, checked,
and only then renamed to its final name; `submission.csv` is replaced the
same way.

- long (one row per image and label): the sample's IDs are split by the
  task's ID pattern into image and label; its value is the label's
  probability or class, or, with task.submission.value_columns, one column
  per class of a multiclass head, its probabilities in class order;
- wide (one row per image): the sample's ID column names the image and each
  other column a label column of the task.

From model outputs to values: `postprocess` applies the task's steps in
output space (`derived`: raise each derived column to the largest of its
sources; `clip`: probabilities into [clip, 1 - clip], so that one confident
mistake costs at most -log(clip)), then `decode` turns each head's outputs
into its columns' values (probabilities, or a class for multiclass and
ordinal heads).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition.data import csvfile
from competition.data.csvfile import as_strings, column, lines
from competition.errors import KitError
from competition.fileio import atomic_path
from competition.ids import check_image_ids
from competition.task import TaskSpec

LATEST = "submission.csv"


class SubmissionError(KitError, ValueError):
    """A sample or submission file that does not fit the task's format."""


def _some(values, total: int | None = None) -> str:
    """The first few values, and how many more there are (of `total`)."""
    values = list(values)
    total = len(values) if total is None else total
    more = f" and {total - csvfile.SHOWN} more" if total > csvfile.SHOWN else ""
    return ", ".join(map(str, values[: csvfile.SHOWN])) + more


@dataclass(frozen=True)
class Sample:
    """The sample submission: its header, its row IDs, and per row (long)
    or per column (wide) which label column a value is for."""

    header: list[str]
    ids: np.ndarray  # the sample's ID column, row by row
    image_ids: np.ndarray  # the image of each row
    labels: np.ndarray | None  # long: the label column of each row
    value_columns: list[str]  # wide: the label columns, in the header's order; long: the values

    def images(self) -> list[str]:
        """The images to predict, in the sample's order."""
        return list(dict.fromkeys(self.image_ids.tolist()))


def _read(path: Path, columns: list[str]):
    try:
        return csvfile.read_strings(path, columns, "sample submission")
    except csvfile.CsvError as exc:
        raise SubmissionError(
            f"{exc} (the sample submission lists what to predict: task.submission.sample, "
            "under data.root unless absolute)"
        ) from None


def _check_repeats(ids: np.ndarray, path: Path) -> None:
    repeated = np.flatnonzero(pd.Series(ids).duplicated(keep=False).to_numpy())
    if len(repeated):
        raise SubmissionError(
            f"{path}: every ID must appear once. Repeated: {lines(repeated, ids)}"
        )


def read_sample(task: TaskSpec, path: str | Path) -> Sample:
    """The sample submission, checked: IDs that do not fit, labels or columns
    the task does not have, and repeated IDs are errors naming the lines."""
    path, spec = Path(path), task.submission
    if spec.layout == "long":
        values = spec.value_columns or [spec.value_column]
        table = _read(path, [spec.id_column, *values])
        ids = column(table, spec.id_column)
        from competition.data.labels import LabelError, _split_ids

        try:
            images, labels = _split_ids(task, ids, str(path))
        except LabelError as exc:
            raise SubmissionError(str(exc)) from None
        ids, labels = as_strings(ids), as_strings(labels)
        unknown = np.flatnonzero(~np.isin(labels, task.label_columns))
        if len(unknown):
            raise SubmissionError(
                f"{path}: unknown label (expected one of {', '.join(task.label_columns)}): "
                f"{lines(unknown, ids)}"
            )
        _check_repeats(ids, path)
        images = as_strings(images)
        check_image_ids(list(dict.fromkeys(images.tolist())), str(path))
        return Sample(table.column_names, ids, images, labels, list(values))
    header = csvfile.header(path) if path.is_file() else []
    table = _read(path, [spec.id_column, *[c for c in header if c != spec.id_column]])
    values = [c for c in table.column_names if c != spec.id_column]
    unknown = [c for c in values if c not in task.label_columns]
    if unknown or not values:
        raise SubmissionError(
            f"{path}: the columns after {spec.id_column} must be label columns of the task "
            f"({', '.join(task.label_columns)}). Received: {values}"
        )
    ids = as_strings(column(table, spec.id_column))
    _check_repeats(ids, path)
    check_image_ids(ids.tolist(), str(path))
    return Sample(table.column_names, ids, ids, None, values)


# --- outputs -> values ---------------------------------------------------------------


def postprocess(task: TaskSpec, outputs: np.ndarray) -> np.ndarray:
    """The task's post-processing steps, in order, on (N, outputs)."""
    if np.isnan(outputs).any():
        rows = int(np.isnan(outputs).any(axis=1).sum())
        raise SubmissionError(f"Predictions contain NaN in {rows} rows")
    out = np.array(outputs, dtype=np.float64)
    position = {name: i for i, name in enumerate(task.outputs)}
    for step in task.submission.postprocess:
        if step == "derived":
            for derived in task.labels.derived:
                if derived.name in position:
                    sources = [position[c] for c in derived.max_of]
                    target = position[derived.name]
                    out[:, target] = np.maximum(out[:, target], out[:, sources].max(axis=1))
        elif step == "clip":
            clip = task.submission.clip
            for head, part in task.head_slices():
                if head.probabilities:
                    out[:, part] = np.clip(out[:, part], clip, 1 - clip)
    return out


def decode(task: TaskSpec, outputs: np.ndarray, image_ids, cuts=None) -> pd.DataFrame:
    """(N, outputs) -> one row per image, one column per label column
    (`cuts`: {head: thresholds} of ordinal heads; default half-way)."""
    parts = {}
    for head, part in task.head_slices():
        values = head.decode(outputs[:, part], (cuts or {}).get(head.name))
        for k, name in enumerate(head.decoded_columns):
            parts[name] = values[:, k]
    return pd.DataFrame(parts, index=pd.Index(image_ids, name="image_id"))


def _class_outputs(task: TaskSpec, labels: np.ndarray, k: int) -> list[str]:
    """The decoded column of class `k` for each row's label (`column=class`)."""
    classes = {c: h.classes for h in task.heads for c in h.columns}
    return [f"{label}={classes[label][k]}" for label in labels]


def reduce(values: pd.DataFrame, keys: pd.Series, how: str) -> pd.DataFrame:
    """One row per key (task.submission.reduce): the mean or max of its images' values."""
    keyed = values.assign(_key=keys.reindex(values.index).to_numpy())
    grouped = keyed.groupby("_key", sort=False)
    out = grouped.max() if how == "max" else grouped.mean()
    out.index.name = "image_id"
    return out


def build_submission(task: TaskSpec, sample: Sample, values: pd.DataFrame) -> pd.DataFrame:
    """The sample's rows and header filled from `values` (one row per image)."""
    rows = values.index.get_indexer(sample.image_ids)
    if (rows < 0).any():
        missing = pd.unique(sample.image_ids[rows < 0])
        raise SubmissionError(f"No prediction for {len(missing)} sample images: {_some(missing)}")
    id_column = task.submission.id_column
    if sample.labels is not None:
        frame = pd.DataFrame({id_column: sample.ids})
        for k, name in enumerate(sample.value_columns):
            wanted = _class_outputs(task, sample.labels, k) if task.submission.value_columns \
                else sample.labels  # fmt: skip
            columns = pd.Index(values.columns).get_indexer(wanted)
            frame[name] = values.to_numpy()[rows, columns]
        return frame
    frame = values.iloc[rows][sample.value_columns].reset_index(drop=True)
    frame.insert(0, id_column, sample.ids)
    return frame[sample.header]


# --- checking -------------------------------------------------------------------------


def _allowed(task: TaskSpec, name: str) -> list | None:
    """None for a probability column (every column of a submission with a
    column per class, or of a one-hot head); the allowed values of a class column; for a row whose
    label is unknown (""), None when every column is a probability."""
    heads = [h for h in task.heads if name in h.columns] or task.heads
    if task.submission.value_columns or all(
        h.kind in ("multilabel", "binary") or h.onehot for h in heads
    ):  # a one-hot head's columns are its classes' probabilities
        return None
    return sorted({c for h in heads if h.classes for c in h.classes})


def _bad_values(task: TaskSpec, frame: pd.DataFrame, name: str, labels: np.ndarray) -> list[str]:
    """The rows of column `name` whose value its label column does not allow."""
    values = pd.to_numeric(frame[name], errors="coerce")
    bad = values.isna().to_numpy()
    for label in np.unique(labels):
        rule = _allowed(task, label)
        ok = values.between(0, 1) if rule is None else values.isin(rule)
        bad |= (labels == label) & ~ok.to_numpy()
    rows = np.flatnonzero(bad)
    if not len(rows):
        return []
    shown = lines(rows, frame.iloc[:, 0].to_numpy(), frame[name].to_numpy())
    return [
        f"{len(rows)} values of {name} are not what the task allows (probabilities in "
        f"[0, 1], or a head's classes): {shown}"
    ]


def check_submission(task: TaskSpec, frame: pd.DataFrame, sample: Sample) -> list[str]:
    """Everything wrong with `frame` (read from a CSV, as text) against the
    sample; an empty list means Kaggle will score it."""
    if list(frame.columns) != sample.header:
        received = ",".join(map(str, frame.columns))
        return [f"header must be {','.join(sample.header)}. Received: {received}"]
    problems = []
    ids = frame.iloc[:, 0].astype(str)
    repeated = ids[ids.duplicated()].unique()
    if len(repeated):
        problems.append(f"{len(repeated)} IDs appear more than once: {_some(repeated)}")
    # pandas' hashed isin: numpy's sorts text arrays (minutes for 727,392 rows)
    missing = sample.ids[~pd.Series(sample.ids).isin(ids).to_numpy()]
    if len(missing):
        problems.append(f"{len(missing)} sample IDs are missing: {_some(missing)}")
    extra = ids[~ids.isin(sample.ids)].unique()
    if len(extra):
        problems.append(f"{len(extra)} IDs are not in the sample submission: {_some(extra)}")
    for name in sample.value_columns:
        if sample.labels is None:
            labels = np.full(len(frame), name, dtype=object)
        else:  # each row's label, from the sample row with its ID ("" for an unknown ID)
            order = pd.Index(sample.ids).get_indexer(ids)
            labels = np.where(order >= 0, sample.labels[np.maximum(order, 0)], "")
        problems += _bad_values(task, frame, name, labels)
    return problems


def read_submission(path: str | Path) -> pd.DataFrame:
    """A submission file as text (so 'nan' or '' stay visible to the check)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise SubmissionError(f"No submission file at {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{path} is not a readable CSV file ({exc})") from None


def validate_file(task: TaskSpec, path: str | Path, sample_path: str | Path) -> tuple[list, int]:
    """(problems, rows) of a submission file checked against a sample."""
    frame = read_submission(path)
    return check_submission(task, frame, read_sample(task, sample_path)), len(frame)


def submission_name(experiment: str, folds: list[int], tta: int) -> str:
    """Named by what made it: experiment, folds, number of TTA views."""
    return f"{experiment}-f{'_'.join(map(str, folds))}-tta{tta}.csv"


def write_submission(
    task: TaskSpec, frame: pd.DataFrame, sample: Sample, directory: str | Path, name: str
) -> Path:
    """Write `frame` under `directory/name`, and copy it to `submission.csv`.
    The file is checked as written, under a temporary name: a failed check
    (or a crash) leaves the previous files untouched."""
    path = Path(directory) / name
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
        problems = check_submission(task, read_submission(tmp), sample)
        if problems:
            raise SubmissionError(
                f"The submission for {path} failed its check; nothing was written:\n- "
                + "\n- ".join(problems)
            )
    with atomic_path(path.parent / LATEST) as tmp:
        shutil.copyfile(path, tmp)
    return path
