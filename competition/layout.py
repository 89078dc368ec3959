"""Where a competition's files live: the download under one root folder
(named by the task spec), the tables the kit derives next to it, and the
run folders. Image paths come from the task's path template, filled only
with values that cannot leave their folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from competition.errors import KitError
from competition.ids import check_image_id

if TYPE_CHECKING:
    import pandas as pd

    from competition.task import TaskSpec

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Layout:
    root: Path
    task: TaskSpec

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

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

    def __init__(
        self,
        layout: Layout,
        split: str,
        fields: pd.DataFrame | None = None,
    ):
        extra = layout.task.template.extra_fields
        if extra and fields is None:
            raise KitError(
                f"The image path template {layout.task.images.path!r} names {extra}: the "
                f"{split} images' paths need a table holding those columns"
            )
        self.layout, self.split = layout, split
        self.fields = None if not extra or fields is None else fields[extra].astype(str)

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


@dataclass(frozen=True)
class RunLayout:
    """runs/<experiment>/: an experiment's folds, reports and test predictions.

    fold<k>/           what training fold k made (checkpoint, history, oof.csv, metrics.json)
    fold<k>/sequence/  the fold's second stage (the sequence model over its CNN's features)
    """

    runs_dir: Path
    experiment: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs_dir", Path(self.runs_dir))

    @property
    def root(self) -> Path:
        return self.runs_dir / self.experiment

    def fold(self, fold: int) -> Path:
        return self.root / f"fold{fold}"

    def sequence(self, fold: int) -> Path:
        return self.fold(fold) / "sequence"

    def finished_folds(self) -> list[int]:
        """Folds whose training finished: best.keras and metrics.json present."""
        found = []
        for folder in self.root.glob("fold*"):
            suffix = folder.name.removeprefix("fold")
            if suffix.isdigit() and _finished(folder):
                found.append(int(suffix))
        return sorted(found)

    def has_sequence(self, fold: int) -> bool:
        """The fold's sequence stage finished."""
        return _finished(self.sequence(fold))


def _finished(folder: Path) -> bool:
    return (folder / "best.keras").is_file() and (folder / "metrics.json").is_file()
