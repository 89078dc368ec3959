"""The RSNA Intracranial Hemorrhage stand-in: head-CT series of the phantom
(`competition.synthetic.phantom`) written as Kaggle ships the competition:
`ID_<hex>.dcm` slices in the task's train and test folders, the long label
CSV (`ID_<image>_<subtype>,Label`, six rows per image in the task's column
order) and the sample submission in the same form.

Deterministic for a seed: every series draws from its own generator seeded
by (seed, series number), so the files do not depend on how many processes
write them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.uid import CTImageStorage

from competition.data.dicom import lenient_uids
from competition.errors import KitError
from competition.fileio import write_csv_atomic
from competition.layout import Layout
from competition.synthetic import phantom
from competition.synthetic.common import file_meta
from competition.synthetic.settings import SynthConfig
from competition.task import TaskSpec

# Share of series that bleed; given a bleed, subtypes are drawn so that the
# slice-level prevalence matches the config.
UNIT = "series"  # what plan() returns, in messages
BLEED_SERIES_FRACTION = 0.45
SLICE_SPACING_MM = 5.0
# Pixel encodings seen in the real data: (BitsStored, PixelRepresentation,
# RescaleIntercept, share of series).
ENCODINGS = {
    "u12": (12, 0, -1024.0, 0.80),
    "s16": (16, 1, 0.0, 0.12),
    "u12_wrapped": (12, 0, 1.0, 0.08),  # the competition's bad-intercept case
}


@dataclass
class SeriesPlan:
    number: int
    split: str
    patient_id: str
    study_id: str
    series_id: str
    image_ids: list[str]

    @property
    def size(self) -> int:
        return len(self.image_ids)


class _IdMaker:
    """Unique `ID_<hex>` strings, drawn from one seeded generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.seen: set[str] = set()

    def __call__(self, digits: int) -> str:
        while True:
            value = f"ID_{int(self.rng.integers(0, 16**digits)):0{digits}x}"
            if value not in self.seen:
                self.seen.add(value)
                return value


def check(task: TaskSpec) -> None:
    """The task must be the one this stand-in writes: its labels are the subtypes drawn."""
    drawn = set(phantom.LESION_SUBTYPES) | set(task.derived_names)
    if task.labels.format != "long" or not set(task.label_columns) <= drawn:
        raise KitError(
            f"synth.kind head_ct writes RSNA Intracranial Hemorrhage's long label CSV with the "
            f"subtypes {', '.join(phantom.LESION_SUBTYPES)}; task {task.name!r} has "
            f"{task.labels.format} labels {task.label_columns}. Use that preset, or another "
            "synth.kind."
        )


def plan(synth: SynthConfig) -> list[SeriesPlan]:
    """Patients, their studies (one axial series each) and image IDs."""
    rng = np.random.default_rng([synth.seed, 0])
    new_id = _IdMaker(rng)
    n_test = round(synth.patients * synth.test_fraction)
    test_patients = set(rng.permutation(synth.patients)[:n_test].tolist())
    plans: list[SeriesPlan] = []
    for patient in range(synth.patients):
        patient_id = new_id(8)
        studies = 1
        if synth.max_studies_per_patient > 1 and rng.random() < synth.multi_study_fraction:
            studies = int(rng.integers(2, synth.max_studies_per_patient + 1))
        for _ in range(studies):
            n = int(rng.integers(synth.slices_per_series[0], synth.slices_per_series[1] + 1))
            plans.append(
                SeriesPlan(
                    number=len(plans),
                    split="test" if patient in test_patients else "train",
                    patient_id=patient_id,
                    study_id=new_id(10),
                    series_id=new_id(10),
                    image_ids=[new_id(9) for _ in range(n)],
                )
            )
    return plans


# --- lesions -----------------------------------------------------------------


def _coverage(subtype: str, mean_slices: float) -> float:
    """Expected share of a bleeding series' slices that one lesion covers."""
    low, high = phantom.HALF_EXTENT[subtype]
    return min(1.0, (low + high + 1) / mean_slices)


def subtype_chances(synth: SynthConfig) -> dict[str, float]:
    """P(subtype | bleeding series), from the target slice prevalence."""
    mean_slices = sum(synth.slices_per_series) / 2
    return {
        s: min(
            1.0,
            synth.prevalence.get(s, 0.0) / (BLEED_SERIES_FRACTION * _coverage(s, mean_slices)),
        )
        for s in phantom.LESION_SUBTYPES
    }


def _add_lesions(
    geo: phantom.SeriesGeometry, rng: np.random.Generator, chances: dict[str, float]
) -> None:
    n = geo.n_slices
    if rng.random() >= BLEED_SERIES_FRACTION:
        return
    center = int(rng.integers(round(n * 0.2), round(n * 0.8) + 1))
    for subtype, chance in chances.items():
        if rng.random() < chance:
            where = center + int(rng.integers(-2, 3))
            if subtype == "intraventricular":  # where the ventricles are
                where = round(n * rng.uniform(0.42, 0.62))
            geo.lesions.append(phantom.random_lesion(rng, subtype, min(max(where, 0), n - 1)))


# --- pixels and files ----------------------------------------------------------


def _pick_encoding(rng: np.random.Generator) -> str:
    names = list(ENCODINGS)
    shares = np.array([ENCODINGS[k][3] for k in names])
    return names[int(rng.choice(len(names), p=shares / shares.sum()))]


def encode_hu(hu: np.ndarray, encoding: str) -> np.ndarray:
    """HU -> the stored values a scanner would write for this encoding."""
    bits, signed, intercept, _ = ENCODINGS[encoding]
    if encoding == "u12_wrapped":
        # Stored as 12-bit two's complement: the reader's fix recovers HU >= -1000.
        return np.mod(np.clip(np.rint(hu), -1000, 3095), 4096).astype(np.uint16)
    raw = np.rint(hu - intercept)
    if signed:
        return np.clip(raw, -32768, 32767).astype(np.int16)
    return np.clip(raw, 0, 2**bits - 1).astype(np.uint16)


def _series_template(
    plan: SeriesPlan, geo: phantom.SeriesGeometry, encoding: str, rng: np.random.Generator
) -> pydicom.Dataset:
    bits, signed, intercept, _ = ENCODINGS[encoding]
    tilt = math.radians(rng.uniform(0, 22))
    ds = pydicom.Dataset()
    ds.Modality = "CT"
    ds.PatientID = plan.patient_id
    ds.StudyInstanceUID = plan.study_id
    ds.SeriesInstanceUID = plan.series_id
    ds.StudyID = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, round(math.cos(tilt), 9), round(-math.sin(tilt), 9)]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = geo.size
    spacing = round(250.0 / geo.size * rng.uniform(0.85, 1.05), 8)
    ds.PixelSpacing = [spacing, spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = signed
    ds.WindowCenter = ["00040", "00040"]
    ds.WindowWidth = ["00080", "00080"]
    ds.RescaleIntercept = f"{intercept:g}"
    ds.RescaleSlope = "1"
    return ds


def _write_slice(
    template: pydicom.Dataset, image_id: str, z: float, raw: np.ndarray, path: Path, x0: float
) -> None:
    ds = template.copy()
    ds.file_meta = file_meta(CTImageStorage, image_id)
    ds.SOPInstanceUID = image_id
    ds.ImagePositionPatient = [x0, x0 / 2, round(z, 5)]
    ds.PixelData = raw.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _noise_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """One field per series, cropped at a random offset for each slice."""
    return rng.standard_normal((size * 2, size * 2), dtype=np.float32) * np.float32(sigma)


def write(plan: SeriesPlan, synth: SynthConfig, layout: Layout) -> list[list]:
    """Render and write one series; returns [image_id, split, *lesion labels] rows."""
    with lenient_uids():  # `ID_...` UIDs, as in the real files
        return _write_series(plan, synth, layout)


def _write_series(plan: SeriesPlan, synth: SynthConfig, layout: Layout) -> list[list]:
    rng = np.random.default_rng([synth.seed, 1, plan.number])
    size, n = synth.image_size, len(plan.image_ids)
    geo = phantom.random_geometry(rng, size, n)
    _add_lesions(geo, rng, subtype_chances(synth))
    encoding = _pick_encoding(rng)
    template = _series_template(plan, geo, encoding, rng)
    noise = _noise_field(rng, size, synth.noise_hu)
    z0, x0 = rng.uniform(-50, 150), round(-size * float(template.PixelSpacing[0]) / 2, 3)
    rows = []
    for i, image_id in enumerate(plan.image_ids):
        hu, labels = phantom.render_slice(geo, i)
        oy, ox = rng.integers(0, size, 2)
        hu += noise[oy : oy + size, ox : ox + size]
        z = z0 + i * SLICE_SPACING_MM * rng.uniform(0.98, 1.04)
        raw = encode_hu(hu, encoding)
        _write_slice(template, image_id, z, raw, layout.image_path(plan.split, image_id), x0)
        rows.append([image_id, plan.split, *labels.tolist()])
    return rows


# --- the label tables, in the task's long format ----------------------------------


def _wide(task: TaskSpec, rows: list[list], split: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["image_id", "split", *phantom.LESION_SUBTYPES])
    frame = frame[frame.split == split].drop(columns="split").set_index("image_id")
    for derived in task.labels.derived:
        frame[derived.name] = frame[derived.max_of].max(axis=1)
    return frame[task.label_columns].astype(np.int8)


def _long(wide: pd.DataFrame, id_column: str, value_column: str) -> pd.DataFrame:
    """One row per image and label: `<image>_<label>,value`, labels in column order."""
    ids = np.char.add(
        np.repeat(wide.index.to_numpy(dtype=str), wide.shape[1]),
        np.tile(np.array([f"_{c}" for c in wide.columns]), len(wide)),
    )
    return pd.DataFrame({id_column: ids, value_column: wide.to_numpy().reshape(-1)})


def write_tables(rows: list[list], layout: Layout) -> pd.DataFrame:
    """The label CSV and the sample submission; returns the test set's labels
    in the label CSV's format (which the real competition keeps hidden)."""
    task = layout.task
    labels, sample = task.labels, task.submission
    train, test = _wide(task, rows, "train"), _wide(task, rows, "test")
    write_csv_atomic(layout.train_csv, _long(train, labels.id_column, labels.value_column))
    blank = test.assign(**dict.fromkeys(test, 0.5))
    write_csv_atomic(layout.sample_submission, _long(blank, sample.id_column, sample.value_column))
    return _long(test, labels.id_column, labels.value_column)


def label_tables_only(layout: Layout, train_images: int, test_images: int) -> None:
    """The label CSV and the sample submission alone, for `train_images` and
    `test_images` images (no slices): the real competition's tables at its
    size, for the scale benchmark. Labels are 1 with probability 0.05."""
    from competition.fileio import write_csv_atomic

    task, rng = layout.task, np.random.default_rng(0)
    columns = task.label_columns
    for path, images, labelled in (
        (layout.train_csv, train_images, True),
        (layout.sample_submission, test_images, False),
    ):
        image_ids = np.char.add("ID_", np.char.zfill(np.arange(images).astype(str), 9))
        suffixes = np.tile(np.array(["_" + c for c in columns]), images)
        ids = np.char.add(np.repeat(image_ids, len(columns)), suffixes)
        values = (rng.random(len(ids)) < 0.05).astype(int) if labelled else np.full(len(ids), 0.5)
        id_column, value_column = (
            (task.labels.id_column, task.labels.value_column)
            if labelled
            else (task.submission.id_column, task.submission.value_column)
        )
        write_csv_atomic(path, pd.DataFrame({id_column: ids, value_column: values}))
    for split in ("train", "test"):
        layout.image_dir(split).mkdir(parents=True, exist_ok=True)
