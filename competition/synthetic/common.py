"""What the stand-ins share: seeded unique IDs, patients split into train
and test, smooth noise for textures, and image files written whole."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from competition.errors import KitError


class UniqueIds:
    """Unique IDs from one seeded generator: `make(rng) -> str` until unseen."""

    def __init__(self, rng: np.random.Generator, make: Callable[[np.random.Generator], str]):
        self.rng, self.make, self.seen = rng, make, set()

    def __call__(self) -> str:
        while True:
            value = self.make(self.rng)
            if value not in self.seen:
                self.seen.add(value)
                return value


def test_patients(rng: np.random.Generator, patients: int, fraction: float) -> set[int]:
    """Which patients' images go to the test folder."""
    return set(rng.permutation(patients)[: round(patients * fraction)].tolist())


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Noise in about [-1, 1] with features about `scale` pixels across."""
    small = (max(2, round(shape[0] / scale)), max(2, round(shape[1] / scale)))
    field = rng.standard_normal(small).astype(np.float32)
    field = cv2.resize(field, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return field / max(float(np.abs(field).max()), 1e-6)


def varied_size(rng: np.random.Generator, base: int, aspects: tuple[float, ...]) -> tuple[int, int]:
    """(rows, cols) around `base` with one of the aspect ratios (cols / rows)."""
    rows = int(base * rng.uniform(0.85, 1.3))
    return rows, int(rows * aspects[int(rng.integers(len(aspects)))])


def write_image(path: Path, image: np.ndarray, quality: int = 92) -> None:
    """An RGB or gray uint8 image as JPEG or PNG (by the path's ending)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"could not write {path}")


def require_task(task, kind: str, competition: str, id_field: str, columns: Sequence[str],
                 image_format: str | None = None) -> None:  # fmt: skip
    """The task is the competition the stand-in writes: its ID field, label
    columns (and image type, when it matters)."""
    wanted = (id_field, list(columns), image_format or task.image_format)
    if (task.id_field, task.label_columns, task.image_format) != wanted:
        raise KitError(
            f"synth.kind {kind} writes {competition}'s files (ID {id_field!r}, labels "
            f"{list(columns)}, {wanted[2]} images); task {task.name!r} has ID {task.id_field!r}, "
            f"labels {task.label_columns}, {task.image_format} images. Use that competition's "
            "preset, or another synth.kind."
        )


def file_meta(sop_class: str, image_id: str) -> FileMetaDataset:
    """A DICOM file's meta group: Explicit VR Little Endian (compressing
    changes it), the instance UID seeded by the image ID (reproducible)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[image_id])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta
