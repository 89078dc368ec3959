"""Where a competition's files live: the download under one root folder
(named by the task spec), the tables the kit derives next to it, and the
run folders. Image paths come from the task's path template, filled only
with values that cannot leave their folder."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from competition.errors import KitError

if TYPE_CHECKING:
    import pandas as pd

    from competition.config import Config
    from competition.task import TaskSpec

# A file name, not a path: no separators, no leading dot (so no `..`), no NUL.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
SPLITS = ("train", "test")


class UnsafeIdError(KitError, ValueError):
    """An image ID (or a path field) that could name a file outside the data folder."""


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


class ImageTemplate:
    """The task's image path template, e.g. `{split_dir}/{patient_id}/{image_id}.dcm`:
    filled from a CSV row, turned into a glob to list the files, and read
    back (a file's path -> its fields)."""

    def __init__(self, text: str, id_field: str):
        self.text, self.id_field = text, id_field
        parsed = list(string.Formatter().parse(text))
        self.fields = [name for _, name, _, _ in parsed if name is not None]

    def problem(self) -> str | None:
        """What is wrong with the template, or None."""
        if not self.text.startswith("{split_dir}/"):
            return "must start with {split_dir}/ (the split's image folder)"
        if self.id_field not in self.fields:
            return f"must name the image ID field {{{self.id_field}}}"
        if len(set(self.fields)) != len(self.fields) or any(
            not f.isidentifier() for f in self.fields
        ):
            return "must name each field once, as {column_name}"
        if "\\" in self.text or "/../" in self.text or "/./" in self.text:
            return "must be a plain relative path"
        return None

    @property
    def within_split(self) -> str:
        """The part of the template below the split's folder."""
        return self.text.removeprefix("{split_dir}/")

    @property
    def extra_fields(self) -> list[str]:
        """Fields other than the split folder and the image ID."""
        return [f for f in self.fields if f not in ("split_dir", self.id_field)]

    def glob(self) -> str:
        """A glob for the files below the split's folder."""
        return re.sub(r"\{[^}]*\}", "*", self.within_split)

    def parse(self, relative: str) -> dict[str, str] | None:
        """Fields of a path below the split's folder, or None if it does not fit."""
        pattern = ""
        for literal, name, _, _ in string.Formatter().parse(self.within_split):
            pattern += re.escape(literal)
            if name is not None:
                pattern += f"(?P<{name}>[^/]+?)"
        found = re.fullmatch(pattern, relative)
        return found.groupdict() if found else None

    def fill(self, split_dir: str, fields: dict[str, str]) -> str:
        for name in self.fields:
            if name != "split_dir":
                check_image_ids([fields[name]], f"path field {name!r}")
        values = {name: fields[name] for name in self.fields if name != "split_dir"}
        return self.text.format(split_dir=split_dir, **values)


@dataclass(frozen=True)
class Layout:
    root: Path
    task: TaskSpec

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def from_config(cls, config: Config) -> Layout:
        return cls(Path(config.data.root), config.task)

    def split_dir(self, split: str) -> str:
        """The split's image folder as the template gets it (relative to root,
        or absolute when the config gives an absolute path)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}. Received: {split!r}")
        images = self.task.images
        return images.train_dir if split == "train" else images.test_dir

    def image_dir(self, split: str) -> Path:
        return self.root / self.split_dir(split)

    def image_path(self, split: str, image_id: str, fields: dict[str, str] | None = None) -> Path:
        """The file of one image; `fields` holds the template's other fields."""
        values = {**(fields or {}), self.task.id_field: check_image_id(image_id)}
        return self.root / self.task.template.fill(self.split_dir(split), values)

    @property
    def train_csv(self) -> Path:
        return self.root / self.task.labels.csv

    @property
    def sample_submission(self) -> Path:
        return self.root / self.task.submission.sample

    @property
    def test_csv(self) -> Path | None:
        name = self.task.images.test_csv
        return self.root / name if name else None

    @property
    def index_csv(self) -> Path:
        return self.root / "index.csv"

    @property
    def folds_csv(self) -> Path:
        return self.root / "folds.csv"

    @property
    def folds_excluded_csv(self) -> Path:
        return self.root / "folds_excluded.csv"


class ImagePaths:
    """Image ID -> its file, for one split. When the template names fields
    other than the ID (`{patient_id}`), they come from `fields`: a table
    indexed by image ID (the label CSV's rows, the test CSV's, or the index)."""

    def __init__(self, layout: Layout, split: str, fields: pd.DataFrame | None = None):
        extra = layout.task.template.extra_fields
        if extra and fields is None:
            raise KitError(
                f"The image path template {layout.task.images.path!r} names {extra}: the "
                f"{split} images' paths need a table holding those columns"
            )
        self.layout, self.split = layout, split
        self.fields = None if not extra else fields[extra].astype(str)

    def __call__(self, image_id: str) -> Path:
        if self.fields is None:
            return self.layout.image_path(self.split, image_id)
        try:
            row = self.fields.loc[image_id]
        except KeyError:
            raise KitError(
                f"No {', '.join(self.fields.columns)} known for {self.split} image {image_id!r}: "
                "it is not in the table its path is built from"
            ) from None
        return self.layout.image_path(self.split, image_id, row.to_dict())


def run_dir(config: Config) -> Path:
    """runs/<experiment>/: the folds, the CV report, the test predictions."""
    return Path(config.runs_dir) / config.experiment


def fold_dir(config: Config, fold: int) -> Path:
    return run_dir(config) / f"fold{fold}"
