"""The RSNA 2022 Cervical Spine Fracture Detection stand-in, in the
download's layout: axial CT slices `train_images/<StudyInstanceUID>/<n>.dcm`
and `test_images/...` (`<n>` the instance number; a fifth of the studies
are RLE Lossless and a tenth JPEG 2000 Lossless, as some real ones are
compressed), `train.csv` one row per study (`StudyInstanceUID,
patient_overall, C1, ..., C7`), `test.csv` (`StudyInstanceUID,
prediction_type, row_id`, eight rows per study) and `sample_submission.csv`
(`row_id,fractured`, `row_id` = `<study>_<label>`).

Each study is a neck: soft tissue with an air-filled trachea in front of
the spine, and seven vertebrae stacked along the body axis, C1 at the top,
each a cortical-bone ring around cancellous bone with the spinal canal
behind it. A fracture is a dark cleft through one vertebra's ring, on the
slices of that vertebra only. Every vertebra looks alike: which label a
fracture sets depends on where along the axis it lies, so a model that
ignores the slices' order cannot score. Half the studies number their
files from the bottom, half from the top: the order is in
ImagePositionPatient, not in the file names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pydicom
from pydicom.uid import CTImageStorage, JPEG2000Lossless, RLELossless

from competition.fileio import write_csv_atomic
from competition.layout import Layout
from competition.synthetic.common import UniqueIds, file_meta, require_task, test_patients
from competition.synthetic.settings import SynthConfig
from competition.task import TaskSpec

UNIT = "studies"
VERTEBRAE = [f"C{k}" for k in range(1, 8)]
LABELS = ["patient_overall", *VERTEBRAE]
SLICE_MM = 1.0
# Encoding of a study's files -> its share (the rest uncompressed).
COMPRESSION = {RLELossless: 0.2, JPEG2000Lossless: 0.1}


@dataclass
class Study:
    number: int
    split: str
    study_id: str
    slices: int
    fractured: list[int]  # vertebra numbers 1..7
    top_first: bool  # file 1 is the top slice

    @property
    def size(self) -> int:
        return self.slices


def check(task: TaskSpec) -> None:
    require_task(task, "cervical_ct", "RSNA Cervical Spine 2022", "StudyInstanceUID", LABELS)


def plan(synth: SynthConfig) -> list[Study]:
    rng = np.random.default_rng([synth.seed, 0])
    uids = UniqueIds(rng, lambda r: f"1.2.826.0.1.3680043.{int(r.integers(1, 10**5))}")
    test = test_patients(rng, synth.patients, synth.test_fraction)
    rate = synth.prevalence.get("patient_overall", 0.5)
    low, high = synth.slices_per_series
    studies = []
    for number in range(synth.patients):
        fractured = []
        if rng.random() < rate:
            count = 1 + int(rng.random() < 0.3)
            fractured = sorted(rng.choice(7, size=count, replace=False) + 1)
        studies.append(
            Study(
                number,
                "test" if number in test else "train",
                uids(),
                int(rng.integers(low, high + 1)),
                [int(v) for v in fractured],
                bool(rng.random() < 0.5),
            )
        )
    return studies


def _bands(slices: int) -> np.ndarray:
    """The vertebra (1..7) of each slice from the bottom (C7) up (C1 at the top)."""
    edges = np.linspace(0, slices, 8)
    bottom_up = np.searchsorted(edges, np.arange(slices) + 0.5) - 1
    return 7 - bottom_up


def _slice_hu(size: int, cleft: float | None):
    """One axial slice in HU: neck, trachea, a vertebra's ring, a cleft (at
    angle `cleft`) when this slice shows the fracture."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    hu = np.full((size, size), -1000.0, np.float32)
    neck = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.38) ** 2 < 1
    hu[neck] = 40.0
    hu[(xx - 0.5) ** 2 + (yy - 0.28) ** 2 < 0.07**2] = -950.0  # trachea
    radius = 0.12  # every vertebra alike: only its place along the neck tells them apart
    cy = 0.55
    distance = np.sqrt((xx - 0.5) ** 2 + (yy - cy) ** 2)
    hu[distance < radius] = 250.0  # cancellous bone
    hu[(distance >= radius - 0.035) & (distance < radius)] = 900.0  # cortex
    hu[(xx - 0.5) ** 2 + (yy - cy - radius - 0.05) ** 2 < 0.045**2] = 10.0  # spinal canal
    if cleft is not None:
        direction = np.array([np.cos(cleft), np.sin(cleft)], np.float32)
        across = np.abs((xx - 0.5) * direction[1] - (yy - cy) * direction[0])
        hu[(across < 0.025) & (distance < radius + 0.01)] = 30.0
    return hu


def _template(study: Study, synth: SynthConfig) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.Modality = "CT"
    ds.PatientID = study.study_id  # one study per patient, as in the competition
    ds.StudyInstanceUID = study.study_id
    ds.SeriesInstanceUID = f"{study.study_id}.1"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = synth.image_size
    ds.PixelSpacing = [round(120.0 / synth.image_size, 6)] * 2
    ds.SliceThickness = SLICE_MM
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    return ds


def write(study: Study, synth: SynthConfig, layout: Layout) -> list[list]:
    """Render one study's slices; returns its [study, split, *labels] row."""
    rng = np.random.default_rng([synth.seed, 1, study.number])
    size, n = synth.image_size, study.slices
    bands = _bands(n)
    angles = {v: float(rng.uniform(0, np.pi)) for v in study.fractured}
    shown = {  # the slices of each fractured vertebra where the cleft shows
        v: set(rng.permutation(np.flatnonzero(bands == v))[: max(1, int(0.8 * (bands == v).sum()))])
        for v in study.fractured
    }
    encoding = rng.choice([None, *COMPRESSION], p=[1 - sum(COMPRESSION.values()),
                                                   *COMPRESSION.values()])  # fmt: skip
    template = _template(study, synth)
    folder = layout.image_dir(study.split) / study.study_id
    folder.mkdir(parents=True, exist_ok=True)
    z0 = float(rng.uniform(-80, 40))
    for i in range(n):
        vertebra = int(bands[i])
        cleft = angles[vertebra] if i in shown.get(vertebra, ()) else None
        hu = _slice_hu(size, cleft)
        hu += rng.standard_normal(hu.shape).astype(np.float32) * synth.noise_hu
        number = n - i if study.top_first else i + 1
        ds = template.copy()
        ds.file_meta = file_meta(CTImageStorage, f"{study.study_id}.{number}")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [-60.0, -60.0, round(z0 + i * SLICE_MM, 4)]
        ds.PixelData = np.clip(np.rint(hu + 1024), -32768, 32767).astype(np.int16).tobytes()
        if encoding is not None:
            ds.compress(encoding, generate_instance_uid=False)
        ds.save_as(folder / f"{number}.dcm", enforce_file_format=True)
    labels = [int(bool(study.fractured))] + [int(v in study.fractured) for v in range(1, 8)]
    return [[study.study_id, study.split, *labels]]


def write_tables(rows: list[list], layout: Layout) -> pd.DataFrame:
    """train.csv, test.csv, the sample submission; returns the test labels
    in train.csv's format (which the real competition keeps hidden)."""
    frame = pd.DataFrame(rows, columns=["StudyInstanceUID", "split", *LABELS])
    train = frame[frame.split == "train"].drop(columns="split")
    test = frame[frame.split == "test"].drop(columns="split")
    write_csv_atomic(layout.train_csv, train)
    long = [
        (study, label, f"{study}_{label}") for study in test["StudyInstanceUID"] for label in LABELS
    ]
    write_csv_atomic(
        layout.test_csv,
        pd.DataFrame(long, columns=["StudyInstanceUID", "prediction_type", "row_id"]),
    )
    sample = pd.DataFrame({"row_id": [row_id for *_, row_id in long], "fractured": 0.5})
    write_csv_atomic(layout.sample_submission, sample)
    return test
