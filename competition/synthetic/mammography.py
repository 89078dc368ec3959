"""The RSNA Screening Mammography Breast Cancer Detection 2023 stand-in, in
the download's layout: `train_images/<patient_id>/<image_id>.dcm` and
`test_images/...`, `train.csv` (site_id, patient_id, image_id, laterality,
view, age, cancer, biopsy, invasive, BIRADS, implant, density, machine_id,
difficult_negative_case), `test.csv` (site_id, patient_id, image_id,
laterality, view, age, implant, machine_id, prediction_id = `<patient>_<L|R>`)
and `sample_submission.csv` (prediction_id,cancer: one row per breast).

Each patient has four views (CC and MLO of each breast). A portrait 12-bit
image: the breast as a half ellipse against the chest-wall side (left or
right), fatty and fibroglandular tissue as smooth noise whose share follows
the density (A-D), a skin line, the pectoral muscle in MLO views, and a
burned-in marker block in the corner away from the breast. A cancer breast
shows a dense, spiculated mass in each view with probability 0.85; every
breast may show a smooth round mass (a cyst) or bright calcifications. As in
the real data: site 1 stores JPEG 2000 (1.2.840.10008.1.2.4.90), site 2 JPEG
Lossless SV1 (.4.70); one machine of each writes MONOCHROME1; windows are
LINEAR, or SIGMOID for one machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLosslessSV1,
    SecondaryCaptureImageStorage,
)

from competition.fileio import write_csv_atomic
from competition.layout import Layout
from competition.synthetic import ljpeg
from competition.synthetic.common import (
    UniqueIds,
    file_meta,
    require_task,
    smooth_noise,
    test_patients,
)
from competition.synthetic.settings import SynthConfig
from competition.task import TaskSpec

UNIT = "patients"  # what plan() returns, in messages
LABEL = "cancer"
BITS = 12
# machine_id -> (site, MONOCHROME1, SIGMOID window)
MACHINES = {
    21: (1, False, False),
    29: (1, True, False),
    93: (1, False, False),
    48: (2, False, True),
    49: (2, True, False),
    170: (2, False, False),
}
DENSITY = {"A": 0.15, "B": 0.35, "C": 0.55, "D": 0.75}
TEST_COLUMNS = [
    "site_id",
    "patient_id",
    "image_id",
    "laterality",
    "view",
    "age",
    "implant",
    "machine_id",
    "prediction_id",
]


@dataclass
class Patient:
    number: int
    split: str
    patient_id: str
    image_ids: list[str]
    cancer: dict[str, int]  # laterality -> 0/1
    machine: int
    age: int
    density: str
    size: int = 4


def check(task: TaskSpec) -> None:
    require_task(task, "mammography", "RSNA Screening Mammography", "image_id", [LABEL], "dicom")


def plan(synth: SynthConfig) -> list[Patient]:
    rng = np.random.default_rng([synth.seed, 0])
    patients = UniqueIds(rng, lambda r: str(int(r.integers(10000, 65536))))
    images = UniqueIds(rng, lambda r: str(int(r.integers(10**6, 2 * 10**9))))
    test = test_patients(rng, synth.patients, synth.test_fraction)
    rate = synth.prevalence.get(LABEL, 0.1)
    plans = []
    for n in range(synth.patients):
        cancer = {side: int(rng.random() < rate) for side in "LR"}
        plans.append(
            Patient(
                n,
                "test" if n in test else "train",
                patients(),
                [images() for _ in range(4)],
                cancer,
                int(rng.choice(list(MACHINES))),
                int(rng.integers(38, 82)),
                str(rng.choice(list(DENSITY), p=[0.1, 0.45, 0.38, 0.07])),
            )
        )
    return plans


def _mass(image, rng, at, radius, value, spiculated) -> None:
    blob = np.zeros(image.shape, np.float32)
    cv2.circle(blob, at, max(2, radius), 1.0, -1, cv2.LINE_AA)
    if spiculated:
        for angle in rng.uniform(0, 2 * math.pi, int(rng.integers(6, 12))):
            tip = (
                round(at[0] + 2.2 * radius * math.cos(angle)),
                round(at[1] + 2.2 * radius * math.sin(angle)),
            )
            cv2.line(blob, at, tip, 0.8, max(1, radius // 4), cv2.LINE_AA)
    blob = cv2.GaussianBlur(blob, (0, 0), max(1.0, radius * (0.25 if spiculated else 0.15)))
    image += blob * value


def draw(rng, shape, left: bool, mlo: bool, density: str, mass_at, kinds) -> np.ndarray:
    """Linear attenuation values (0 = air .. about 1) of one view, chest wall on the left."""
    rows, cols = shape
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    centre_y, reach, half = (
        rows * rng.uniform(0.48, 0.55),
        cols * rng.uniform(0.62, 0.8),
        rows * rng.uniform(0.36, 0.44),
    )
    inside = (xx / reach) ** 2 + ((yy - centre_y) / half) ** 2
    breast = (inside <= 1).astype(np.float32)
    tissue = 0.35 + 0.1 * smooth_noise(rng, shape, cols / 8)
    glands = smooth_noise(rng, shape, cols / 12) > 1 - 2 * DENSITY[density]
    tissue += 0.2 * cv2.GaussianBlur(glands.astype(np.float32), (0, 0), cols / 30)
    tissue *= np.clip(1.15 - 0.35 * inside, 0.6, 1.0)  # thinner towards the skin
    if mlo:  # the pectoral muscle: a bright wedge at the top of the chest wall
        tissue += 0.3 * ((xx / (cols * 0.35) + yy / (rows * 0.45)) < 1)
    image = breast * tissue
    edge = cv2.morphologyEx(breast, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    image += 0.15 * edge
    for kind, (fy, fx) in zip(kinds, mass_at, strict=True):
        at = (round(fx * reach * 0.8), round(centre_y + (fy - 0.5) * half * 1.4))
        if kind == "cancer":
            _mass(image, rng, at, round(cols * rng.uniform(0.025, 0.05)), 0.32, spiculated=True)
        elif kind == "cyst":
            _mass(image, rng, at, round(cols * rng.uniform(0.02, 0.045)), 0.22, spiculated=False)
        else:  # calcifications
            for _ in range(int(rng.integers(4, 12))):
                dot = (at[0] + int(rng.integers(-8, 9)), at[1] + int(rng.integers(-8, 9)))
                cv2.circle(image, dot, 1, 0.95, -1)
    image = image * breast + rng.normal(0, 0.012, shape).astype(np.float32)
    marker = (
        slice(round(rows * 0.04), round(rows * 0.09)),
        slice(round(cols * 0.72), round(cols * 0.93)),
    )
    image[marker] = 0.9  # the burned-in view label, away from the breast
    return image if left else image[:, ::-1]


def _dataset(
    patient: Patient, image_id: str, side: str, view: str, stored: np.ndarray
) -> pydicom.Dataset:
    site, monochrome1, sigmoid = MACHINES[patient.machine]
    ds = pydicom.Dataset()
    ds.file_meta = file_meta(SecondaryCaptureImageStorage, image_id)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.ImageLaterality, ds.ViewPosition = (
        "MG",
        patient.patient_id,
        side,
        view,
    )
    ds.SamplesPerPixel, ds.Rows, ds.Columns = 1, *stored.shape
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, BITS, BITS - 1, 0
    ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
    ds.WindowCenter, ds.WindowWidth = ["2048", "1800"], ["3000", "2400"]
    if sigmoid:
        ds.VOILUTFunction = "SIGMOID"
    if site == 1:
        ds.PixelData = stored.tobytes()
        ds.compress(JPEG2000Lossless, generate_instance_uid=False)  # the UID stays seeded
    else:
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        ds.PixelData = encapsulate([ljpeg.encode(stored, BITS)])
    return ds


def write(patient: Patient, synth: SynthConfig, layout: Layout) -> list[dict]:
    rows = []
    views = [(side, view) for side in "LR" for view in ("CC", "MLO")]
    site, monochrome1, _ = MACHINES[patient.machine]
    for k, ((side, view), image_id) in enumerate(zip(views, patient.image_ids, strict=True)):
        rng = np.random.default_rng([synth.seed, 1, patient.number, k])
        finding = np.random.default_rng([synth.seed, 2, patient.number, side == "R"])
        spot = [tuple(finding.uniform(0.2, 0.8, 2))]  # the same place in both views of a breast
        kinds = ["cancer"] if patient.cancer[side] and rng.random() < 0.85 else []
        if not kinds and rng.random() < 0.2:
            kinds = [str(rng.choice(["cyst", "calcifications"]))]
        shape = (round(synth.image_size * rng.uniform(1.25, 1.35)), synth.image_size)
        image = draw(
            rng, shape, side == "L", view == "MLO", patient.density, spot * len(kinds), kinds
        )
        stored = np.clip(np.rint(image * 3600 + 150), 0, 2**BITS - 1).astype(np.uint16)
        if monochrome1:
            stored = (2**BITS - 1 - stored).astype(np.uint16)
        path = layout.image_path(patient.split, image_id, {"patient_id": patient.patient_id})
        path.parent.mkdir(parents=True, exist_ok=True)
        _dataset(patient, image_id, side, view, stored).save_as(path, enforce_file_format=True)
        cancer = patient.cancer[side]
        rows.append(
            {
                "split": patient.split,
                "site_id": site,
                "patient_id": patient.patient_id,
                "image_id": image_id,
                "laterality": side,
                "view": view,
                "age": float(patient.age),
                LABEL: cancer,
                "biopsy": int(cancer or rng.random() < 0.03),
                "invasive": int(cancer and rng.random() < 0.7),
                "BIRADS": "" if cancer else int(rng.choice([1, 2])),
                "implant": 0,
                "density": patient.density,
                "machine_id": patient.machine,
                "difficult_negative_case": bool(not cancer and kinds),
                "prediction_id": f"{patient.patient_id}_{side}",
            }
        )
    return rows


def write_tables(rows: list[dict], layout: Layout) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    train = table[table.split == "train"].drop(columns=["split", "prediction_id"])
    test = table[table.split == "test"].drop(columns="split")
    write_csv_atomic(layout.train_csv, train)
    write_csv_atomic(layout.test_csv, test[TEST_COLUMNS])
    sample = (
        test[["prediction_id"]].drop_duplicates().assign(**{LABEL: round(train[LABEL].mean(), 6)})
    )
    write_csv_atomic(layout.sample_submission, sample)
    return test.drop(columns="prediction_id")
