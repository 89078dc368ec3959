"""The submission file: the competition's long `ID,Label` format, built on the
sample submission's rows (same rows, same order), checked, and only then
renamed to its final name; `submission.csv` is replaced the same way."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import KitError
from competition.fileio import atomic_path
from competition.labels import SUBTYPES, read_long_csv, split_ids

LATEST = "submission.csv"
_SHOWN = 5  # offending IDs named in a message


class SubmissionError(KitError, ValueError):
    """A sample or submission file that does not fit the competition's format."""


def _some(values, total: int | None = None) -> str:
    """The first few values, and how many more there are (of `total`)."""
    values = list(values)
    total = len(values) if total is None else total
    more = f" and {total - _SHOWN} more" if total > _SHOWN else ""
    return ", ".join(map(str, values[:_SHOWN])) + more


def read_sample(path: str | Path) -> pd.DataFrame:
    """The sample submission: columns ID, image_id, subtype; malformed IDs,
    unknown subtypes and repeated IDs are errors naming the lines."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(
            f"No sample submission at {path}: it lists the IDs to predict "
            "(config key data.sample_submission, under data.root unless absolute)."
        )
    parsed = split_ids(read_long_csv(path), str(path))
    repeated = parsed.index[parsed["ID"].duplicated(keep=False)]
    if len(repeated):
        lines = [f"line {i + 2} ({parsed.at[i, 'ID']})" for i in repeated]
        raise SubmissionError(f"{path}: every ID must appear once. Repeated: {_some(lines)}")
    return parsed[["ID", "image_id", "subtype"]]


def sample_image_ids(sample: pd.DataFrame) -> list[str]:
    """The images to predict, in the sample's order."""
    return sample["image_id"].drop_duplicates().tolist()


def finalize(probs: pd.DataFrame, clip: float, any_consistency: bool) -> pd.DataFrame:
    """`any` raised to the largest subtype (when asked), then everything
    clipped to [clip, 1 - clip]: one confident mistake costs at most -log(clip)."""
    values = probs[list(SUBTYPES)].to_numpy(np.float64, copy=True)
    if np.isnan(values).any():
        bad = probs.index[np.isnan(values).any(axis=1)]
        raise SubmissionError(f"Predictions contain NaN for images {_some(bad)}")
    if any_consistency:
        values[:, -1] = np.maximum(values[:, -1], values[:, :-1].max(axis=1))
    return pd.DataFrame(np.clip(values, clip, 1 - clip), index=probs.index, columns=SUBTYPES)


def build_submission(sample: pd.DataFrame, probs: pd.DataFrame) -> pd.DataFrame:
    """`ID,Label` in the sample's rows and order; probs: one row per image."""
    rows = probs.index.get_indexer(sample["image_id"])
    if (rows < 0).any():
        missing = sample.loc[rows < 0, "image_id"].drop_duplicates()
        raise SubmissionError(f"No prediction for {len(missing)} sample images: {_some(missing)}")
    columns = pd.Index(SUBTYPES).get_indexer(sample["subtype"])
    values = probs[list(SUBTYPES)].to_numpy(np.float64)[rows, columns]
    return pd.DataFrame({"ID": sample["ID"].to_numpy(), "Label": values})


def check_submission(frame: pd.DataFrame, sample: pd.DataFrame) -> list[str]:
    """Everything wrong with `frame` (as read from a CSV, strings) against the
    sample; an empty list means Kaggle will score it."""
    if list(frame.columns) != ["ID", "Label"]:
        return [f"header must be ID,Label. Received: {','.join(map(str, frame.columns))}"]
    problems = []
    ids = frame["ID"].astype(str)
    repeated = ids[ids.duplicated()].unique()
    if len(repeated):
        problems.append(f"{len(repeated)} IDs appear more than once: {_some(repeated)}")
    missing = sample.loc[~sample["ID"].isin(ids), "ID"]
    if len(missing):
        problems.append(f"{len(missing)} sample IDs are missing: {_some(missing)}")
    extra = ids[~ids.isin(sample["ID"])].unique()
    if len(extra):
        problems.append(f"{len(extra)} IDs are not in the sample submission: {_some(extra)}")
    labels = pd.to_numeric(frame["Label"], errors="coerce")
    bad = labels.isna() | ~labels.between(0, 1)
    if bad.any():
        shown = [
            f"line {i + 2} ({frame.at[i, 'ID']}={frame.at[i, 'Label']!r})"
            for i in frame.index[bad][:_SHOWN]
        ]
        problems.append(
            f"{int(bad.sum())} labels are not numbers in [0, 1]: {_some(shown, int(bad.sum()))}"
        )
    return problems


def read_submission(path: str | Path) -> pd.DataFrame:
    """A submission file as strings (so 'nan' or '' stay visible to the check)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise SubmissionError(f"No submission file at {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{path} is not a readable CSV file ({exc})") from None


def validate_file(path: str | Path, sample_path: str | Path) -> tuple[list[str], int]:
    """(problems, rows) of a submission file checked against a sample."""
    frame = read_submission(path)
    return check_submission(frame, read_sample(sample_path)), len(frame)


def submission_name(experiment: str, folds: list[int], tta: int) -> str:
    """Named by what made it: experiment, folds, number of TTA views."""
    return f"{experiment}-f{'_'.join(map(str, folds))}-tta{tta}.csv"


def write_submission(
    frame: pd.DataFrame, sample: pd.DataFrame, directory: str | Path, name: str
) -> Path:
    """Write `frame` under `directory/name`, and copy it to `submission.csv`.
    The file is checked as written, under a temporary name: a failed check
    (or a crash) leaves the previous files untouched."""
    path = Path(directory) / name
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
        problems = check_submission(read_submission(tmp), sample)
        if problems:
            raise SubmissionError(
                f"The submission for {path} failed its check; nothing was written:\n- "
                + "\n- ".join(problems)
            )
    with atomic_path(path.parent / LATEST) as tmp:
        shutil.copyfile(path, tmp)
    return path
