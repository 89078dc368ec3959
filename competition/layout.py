"""Where a competition's files live: the Kaggle download layout under one
root folder, plus the tables the kit derives next to it. Image paths are
built only from IDs that cannot leave their folder."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from competition.config import Config
from competition.errors import KitError

# A file name, not a path: no separators, no leading dot (so no `..`), no NUL.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
SPLITS = ("train", "test")


class UnsafeIdError(KitError, ValueError):
    """An image ID that could name a file outside the data folder."""


def check_image_id(image_id: str) -> str:
    check_image_ids([image_id], "image ID")
    return image_id


def check_image_ids(image_ids, source: str) -> None:
    """Every ID is a plain file name; the error names the bad ones."""
    bad = [i for i in image_ids if not (isinstance(i, str) and _SAFE_ID.fullmatch(i))]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UnsafeIdError(
            f"{source}: image IDs must be plain file names (letters, digits, '_', '.', '-'; no "
            f"path separators, no leading dot). Received: {', '.join(map(repr, bad[:5]))}{more}"
        )


@dataclass(frozen=True)
class Layout:
    root: Path
    train_dir: str = "stage_2_train"
    test_dir: str = "stage_2_test"
    train_csv_name: str = "stage_2_train.csv"
    sample_submission_name: str = "stage_2_sample_submission.csv"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def from_config(cls, config: Config) -> Layout:
        data = config.data
        return cls(
            Path(data.root), data.train_dir, data.test_dir, data.train_csv, data.sample_submission
        )

    def with_root(self, root: Path) -> Layout:
        return replace(self, root=Path(root))

    def image_dir(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}. Received: {split!r}")
        return self.root / (self.train_dir if split == "train" else self.test_dir)

    def image_path(self, split: str, image_id: str) -> Path:
        return self.image_dir(split) / f"{check_image_id(image_id)}.dcm"

    @property
    def train_csv(self) -> Path:
        return self.root / self.train_csv_name

    @property
    def sample_submission(self) -> Path:
        return self.root / self.sample_submission_name

    @property
    def index_csv(self) -> Path:
        return self.root / "index.csv"

    @property
    def folds_csv(self) -> Path:
        return self.root / "folds.csv"

    @property
    def folds_excluded_csv(self) -> Path:
        return self.root / "folds_excluded.csv"


def run_dir(config: Config) -> Path:
    """runs/<experiment>/: the folds, the CV report, the test predictions."""
    return Path(config.runs_dir) / config.experiment


def fold_dir(config: Config, fold: int) -> Path:
    return run_dir(config) / f"fold{fold}"
