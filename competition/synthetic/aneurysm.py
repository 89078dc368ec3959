"""The RSNA 2025 Intracranial Aneurysm Detection stand-in, in the download's
layout: `series/<SeriesInstanceUID>/<SOPInstanceUID>.dcm` (axial slices,
or one multi-frame file for some MR series), `train.csv` one row per
series (`SeriesInstanceUID, PatientAge, PatientSex, Modality`, the 13
artery locations, `Aneurysm Present`), `train_localizers.csv` (a row per
aneurysm: `SeriesInstanceUID, SOPInstanceUID, coordinates, location`, the
coordinates `{'x': .., 'y': ..}` in pixels, with `'f'`, the frame, in a
multi-frame file). The download has no test series:
Kaggle's evaluation API hands them to the notebook one at a time. The
stand-in writes some to `test_series/` (same layout) with a
`sample_submission.csv` listing them (`SeriesInstanceUID` + the 14
columns), so that `make predict` and `make validate` have a test set, and
the evaluation-API tests a folder to serve.

Each series is a head: a skull, brain, and the 13 artery segments as
short vessels running along the body axis, each at its place in the
slice and along the axis (the infraclinoid and supraclinoid carotids lie
at the same place in the slice, one above the other). An aneurysm is a
round bulge on one segment, on the slices of that segment's height only:
which location it sets depends on where along the axis it lies. Half the
series are CTA (HU, bright contrast in the vessels); the rest MR without
HU, each series on its own scale and offset (MRA and T1 post-contrast:
bright vessels; T2: dark flow voids), a third of them stored as one
multi-frame file with a position per frame. Some series carry a
localizer slice of another orientation and size, which the kit must leave
out of the volume.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pydicom
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, MRImageStorage

from competition.fileio import write_csv_atomic
from competition.layout import Layout
from competition.synthetic.common import UniqueIds, file_meta, require_task, test_patients
from competition.synthetic.settings import SynthConfig
from competition.task import TaskSpec

UNIT = "series"
# location -> (x, y) in the slice (0..1, image left to right, front to back)
# and height along the head (0 = the lowest slice, 1 = the top)
LOCATIONS = {
    "Left Infraclinoid Internal Carotid Artery": (0.62, 0.52, 0.22),
    "Right Infraclinoid Internal Carotid Artery": (0.38, 0.52, 0.22),
    "Left Supraclinoid Internal Carotid Artery": (0.62, 0.52, 0.46),
    "Right Supraclinoid Internal Carotid Artery": (0.38, 0.52, 0.46),
    "Left Middle Cerebral Artery": (0.76, 0.48, 0.60),
    "Right Middle Cerebral Artery": (0.24, 0.48, 0.60),
    "Anterior Communicating Artery": (0.50, 0.34, 0.60),
    "Left Anterior Cerebral Artery": (0.56, 0.28, 0.78),
    "Right Anterior Cerebral Artery": (0.44, 0.28, 0.78),
    "Left Posterior Communicating Artery": (0.58, 0.62, 0.52),
    "Right Posterior Communicating Artery": (0.42, 0.62, 0.52),
    "Basilar Tip": (0.50, 0.68, 0.62),
    "Other Posterior Circulation": (0.50, 0.68, 0.30),
}
PRESENT = "Aneurysm Present"
LABELS = [*LOCATIONS, PRESENT]
# modality -> share of the series; each has its own contrast (see _tissues)
MODALITIES = {"CTA": 0.5, "MRA": 0.25, "MRI T1post": 0.1, "MRI T2": 0.15}
MULTI_FRAME_SHARE = 0.33  # of the MR series
LOCALIZER_SHARE = 0.1  # series with a localizer slice of another orientation
SEGMENT = 0.16  # half the height a vessel segment runs along the axis
VESSEL, BULGE = 0.022, 0.06  # radii, fractions of the slice
BULGE_HEIGHT = 0.1  # half the aneurysm's extent along the head: a few slices
SLICE_MM = 1.0


@dataclass
class Series:
    number: int
    split: str
    series_id: str
    patient_id: str
    modality: str
    slices: int
    aneurysms: list[int]  # location numbers 0..12
    shift: tuple[float, float, float]  # the head's offset: x, y, height
    multi_frame: bool
    localizer: bool

    @property
    def size(self) -> int:
        return self.slices


def check(task: TaskSpec) -> None:
    require_task(task, "aneurysm", "RSNA Intracranial Aneurysm 2025", "SeriesInstanceUID", LABELS)


def plan(synth: SynthConfig) -> list[Series]:
    rng = np.random.default_rng([synth.seed, 0])
    uids = UniqueIds(rng, lambda r: f"1.2.826.0.1.3680043.8.498.{int(r.integers(1, 10**9))}")
    test = test_patients(rng, synth.patients, synth.test_fraction)
    rate = synth.prevalence.get(PRESENT, 0.45)
    low, high = synth.slices_per_series
    names, shares = list(MODALITIES), list(MODALITIES.values())
    found = []
    for number in range(synth.patients):
        modality = str(rng.choice(names, p=shares))
        aneurysms = []
        if rng.random() < rate:
            count = 1 + int(rng.random() < 0.2)
            aneurysms = sorted(int(k) for k in rng.choice(len(LOCATIONS), count, replace=False))
        found.append(
            Series(
                number,
                "test" if number in test else "train",
                uids(),
                f"ANEU{number:06d}",
                modality,
                int(rng.integers(low, high + 1)),
                aneurysms,
                (*rng.uniform(-0.03, 0.03, 2), float(rng.uniform(-0.04, 0.04))),
                modality != "CTA" and bool(rng.random() < MULTI_FRAME_SHARE),
                bool(rng.random() < LOCALIZER_SHARE),
            )
        )
    return found


def _tissues(modality: str) -> dict[str, float]:
    """Signal of air, bone, brain, vessel: HU for CTA, arbitrary units for MR."""
    return {
        "CTA": {"air": -1000.0, "bone": 1200.0, "brain": 35.0, "vessel": 350.0},
        "MRA": {"air": 0.0, "bone": 30.0, "brain": 180.0, "vessel": 900.0},
        "MRI T1post": {"air": 0.0, "bone": 60.0, "brain": 400.0, "vessel": 800.0},
        "MRI T2": {"air": 0.0, "bone": 40.0, "brain": 700.0, "vessel": 120.0},
    }[modality]


def _slice(size: int, height: float, series: Series, signal: dict) -> np.ndarray:
    """One axial slice at `height` (0..1 along the head)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    dx, dy, dz = series.shift
    out = np.full((size, size), signal["air"], np.float32)
    head = ((xx - 0.5 - dx) / 0.44) ** 2 + ((yy - 0.5 - dy) / 0.47) ** 2
    out[head < 1] = signal["bone"]
    out[head < 0.85] = signal["brain"]
    for k, (x, y, z) in enumerate(LOCATIONS.values()):
        along = height - (z + dz)
        if abs(along) > SEGMENT:
            continue
        distance = np.sqrt((xx - x - dx) ** 2 + (yy - y - dy) ** 2)
        out[distance < VESSEL] = signal["vessel"]
        if k in series.aneurysms and abs(along) < BULGE_HEIGHT:
            # an ellipsoid: its cut is widest at the aneurysm's own height
            radius = BULGE * np.sqrt(1 - (along / BULGE_HEIGHT) ** 2)
            out[np.sqrt((xx - x - dx - VESSEL) ** 2 + (yy - y - dy) ** 2) < radius] = signal[
                "vessel"
            ]
    return out


def _template(series: Series, synth: SynthConfig) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ct = series.modality == "CTA"
    ds.Modality = "CT" if ct else "MR"
    ds.SeriesDescription = series.modality
    ds.PatientID = series.patient_id
    ds.StudyInstanceUID = f"{series.series_id}.0"
    ds.SeriesInstanceUID = series.series_id
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = synth.image_size
    ds.PixelSpacing = [round(200.0 / synth.image_size, 6)] * 2
    ds.SliceThickness = SLICE_MM
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    if ct:
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    else:  # MR: stored values with no rescale to any physical unit
        ds.PixelRepresentation = 0
    return ds


def _stored(values: np.ndarray, series: Series, gain: float, offset: float) -> bytes:
    if series.modality == "CTA":
        return np.clip(np.rint(values + 1024), -32768, 32767).astype(np.int16).tobytes()
    return np.clip(np.rint(values * gain + offset), 0, 65535).astype(np.uint16).tobytes()


def _localizer(template: pydicom.Dataset, series: Series, size: int, z: float) -> pydicom.Dataset:
    """A sagittal scout of another size, stored with the series."""
    ds = copy.deepcopy(template)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.Rows, ds.Columns = size, size + size // 2
    ds.ImagePositionPatient = [0.0, -100.0, round(z, 4)]
    scout = np.zeros((ds.Rows, ds.Columns), np.float32)
    dtype = np.int16 if series.modality == "CTA" else np.uint16
    ds.PixelData = scout.astype(dtype).tobytes()
    return ds


# Each file starts from a deep copy of the template: Dataset.copy() is shallow
# (the copies share one tag dictionary).


def write(series: Series, synth: SynthConfig, layout: Layout) -> list[list]:
    """Render one series' files; returns its [series, split, *train.csv columns] row."""
    rng = np.random.default_rng([synth.seed, 1, series.number])
    size, n = synth.image_size, series.slices
    signal = _tissues(series.modality)
    gain, offset = float(rng.uniform(0.5, 4.0)), float(rng.uniform(0, 300))
    noise = synth.noise_hu * (1.0 if series.modality == "CTA" else 0.6)
    template = _template(series, synth)
    folder = layout.image_dir(series.split) / series.series_id
    folder.mkdir(parents=True, exist_ok=True)
    z0 = float(rng.uniform(-40, 40))
    slices = []
    for i in range(n):
        values = _slice(size, i / max(n - 1, 1), series, signal)
        values += rng.standard_normal(values.shape).astype(np.float32) * noise
        slices.append(_stored(values, series, gain, offset))
    sop_class = CTImageStorage if series.modality == "CTA" else MRImageStorage
    positions = [[-100.0, -100.0, round(z0 + i * SLICE_MM, 4)] for i in range(n)]
    if series.multi_frame:
        sops = [_write_multi_frame(template, series, slices, positions, folder, sop_class)] * n
    else:
        sops = [""] * n
        for i in rng.permutation(n):  # file names say nothing of the order
            ds = copy.deepcopy(template)
            ds.file_meta = file_meta(sop_class, f"{series.series_id}.{i}")
            ds.SOPInstanceUID = sops[i] = ds.file_meta.MediaStorageSOPInstanceUID
            ds.InstanceNumber = int(i) + 1
            ds.ImagePositionPatient = positions[i]
            ds.PixelData = slices[i]
            ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    if series.localizer:
        ds = _localizer(template, series, size, z0 + n * SLICE_MM / 2)
        ds.file_meta = file_meta(sop_class, f"{series.series_id}.localizer")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    labels = [int(k in series.aneurysms) for k in range(len(LOCATIONS))]
    age, sex = int(rng.integers(25, 85)), str(rng.choice(["Female", "Male"]))
    row = [series.series_id, series.split, age, sex, series.modality, *labels]
    return [[*row, int(bool(series.aneurysms)), _localizers(series, sops, size)]]


def _localizers(series: Series, sops: list[str], size: int) -> list[list]:
    """train_localizers.csv's rows of the series: each aneurysm's slice (its
    height along the head) and point."""
    dx, dy, dz = series.shift
    found = []
    for k in series.aneurysms:
        name, (x, y, z) = list(LOCATIONS.items())[k]
        i = int(np.clip(round((z + dz) * (series.slices - 1)), 0, series.slices - 1))
        point = {"x": round(float(x + dx + VESSEL) * size, 1), "y": round(float(y + dy) * size, 1)}
        if series.multi_frame:
            point["f"] = i
        found.append([series.series_id, sops[i], str(point), name])
    return found


def _write_multi_frame(template, series, slices, positions, folder, sop_class) -> str:
    """The series as one file of frames, each with its position."""
    ds = copy.deepcopy(template)
    ds.file_meta = file_meta(sop_class, f"{series.series_id}.multiframe")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.NumberOfFrames = len(slices)
    ds.PixelData = b"".join(slices)
    frames = []
    for position in positions:
        item, plane = pydicom.Dataset(), pydicom.Dataset()
        plane.ImagePositionPatient = position
        item.PlanePositionSequence = Sequence([plane])
        frames.append(item)
    shared, orientation = pydicom.Dataset(), pydicom.Dataset()
    orientation.ImageOrientationPatient = template.ImageOrientationPatient
    shared.PlaneOrientationSequence = Sequence([orientation])
    del ds.ImageOrientationPatient  # an enhanced file keeps it in its functional groups
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    return ds.SOPInstanceUID


COLUMNS = ["SeriesInstanceUID", "split", "PatientAge", "PatientSex", "Modality", *LABELS,
           "localizers"]  # fmt: skip
LOCALIZERS = "train_localizers.csv"


def write_tables(rows: list[list], layout: Layout) -> pd.DataFrame:
    """train.csv and the test series' sample submission; returns the test
    labels in train.csv's format (which the real competition keeps hidden)."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    train = frame[frame.split == "train"].drop(columns=["split", "localizers"])
    test = frame[frame.split == "test"].drop(columns=["split", "localizers"])
    write_csv_atomic(layout.train_csv, train)
    points = [p for found in frame.loc[frame.split == "train", "localizers"] for p in found]
    columns = ["SeriesInstanceUID", "SOPInstanceUID", "coordinates", "location"]
    write_csv_atomic(layout.root / LOCALIZERS, pd.DataFrame(points, columns=columns))
    sample = test[["SeriesInstanceUID"]].assign(**dict.fromkeys(LABELS, 0.5))
    write_csv_atomic(layout.sample_submission, sample)
    return test
