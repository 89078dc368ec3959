"""The RSNA 2023 Abdominal Trauma Detection stand-in, in the download's
layout: `train_images/<patient_id>/<series_id>/<instance_number>.dcm` (CT,
1-2 axial series per patient; some RLE Lossless, mixed
PixelRepresentation), `train.csv` one row per patient (`patient_id`, the
healthy/injury pairs of bowel and extravasation, the healthy/low/high
triples of kidney, liver and spleen, `any_injury`), `train_series_meta.csv`
(`patient_id, series_id, aortic_hu, incomplete_organ`),
`image_level_labels.csv` (`patient_id, series_id, instance_number,
injury_name`: the slices that show a bowel injury or active
extravasation), `segmentations/<series_id>.nii` for some training series
(1 liver, 2 spleen, 3 left kidney, 4 right kidney, 5 bowel; their axes in
the NIfTI's own order, some flipped: the affine says how), and the test
patients' `test_series_meta.csv` and `sample_submission.csv`.

Each series is an abdomen: the organs' places and sizes differ per
patient, and what grades an organ is small: a dark laceration a few pixels
across (low) or twice that (high) on a few slices inside it; a bowel
injury a bright spot in a loop's wall, an extravasation a bright blush in
the liver or spleen. At a whole slice's coarse size these are a pixel or
two on a couple of slices: a model must find the organ, then look closely.
A second series of a patient is the same anatomy, shifted along the body
axis and rescanned."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pydicom
from pydicom.uid import CTImageStorage, RLELossless

from competition.fileio import write_csv_atomic
from competition.layout import Layout
from competition.synthetic.common import (
    UniqueIds,
    file_meta,
    require_task,
    smooth_noise,
    test_patients,
)
from competition.synthetic.settings import SynthConfig
from competition.task import TaskSpec

UNIT = "patients"
BINARY = ("bowel", "extravasation")
TRIPLE = ("kidney", "liver", "spleen")
GRADES = {"bowel": ("healthy", "injury"), "extravasation": ("healthy", "injury")}
GRADES.update({organ: ("healthy", "low", "high") for organ in TRIPLE})
LABELS = [f"{o}_{g}" for o in (*BINARY, *TRIPLE) for g in GRADES[o]] + ["any_injury"]
SHARES = {  # of patients, per grade
    "bowel": (0.82, 0.18),
    "extravasation": (0.8, 0.2),
    "kidney": (0.72, 0.16, 0.12),
    "liver": (0.68, 0.18, 0.14),
    "spleen": (0.68, 0.18, 0.14),
}
MASK_VALUES = {"liver": 1, "spleen": 2, "kidney_left": 3, "kidney_right": 4, "bowel": 5}
IMAGE_LEVEL = {"bowel": "Bowel", "extravasation": "Active_Extravasation"}
TWO_SERIES, MASKED, RLE_SHARE = 0.4, 0.6, 0.2  # shares of patients, training series, series
SLICE_MM = 5.0
FOV_MM = 340.0
HU = {"fat": -90.0, "body": 40.0, "liver": 95.0, "spleen": 110.0, "kidney": 160.0,
      "bowel_wall": 70.0, "lumen": -400.0, "bone": 600.0, "aorta": 220.0,
      "laceration": 20.0, "blush": 320.0}  # fmt: skip
INJURY_RADIUS = {"low": 0.022, "high": 0.045}  # of the slice's side (128 px: 3 and 6 px)


@dataclass
class Patient:
    number: int
    split: str
    patient_id: str
    series: list[str]
    grades: dict[str, int]  # organ -> grade position
    masked: list[bool] = field(default_factory=list)  # each series: a segmentation file

    @property
    def size(self) -> int:
        return 24 * len(self.series)


def check(task: TaskSpec) -> None:
    require_task(task, "abdominal_ct", "RSNA Abdominal Trauma 2023", "patient_id", LABELS[:-1])


def plan(synth: SynthConfig) -> list[Patient]:
    rng = np.random.default_rng([synth.seed, 0])
    ids = UniqueIds(rng, lambda r: str(int(r.integers(10, 65536))))
    series_ids = UniqueIds(rng, lambda r: str(int(r.integers(100, 65536))))
    test = test_patients(rng, synth.patients, synth.test_fraction)
    patients = []
    for number in range(synth.patients):
        count = 2 if rng.random() < TWO_SERIES else 1
        grades = {o: int(rng.choice(len(GRADES[o]), p=SHARES[o])) for o in SHARES}
        split = "test" if number in test else "train"
        masked = [split == "train" and rng.random() < MASKED for _ in range(count)]
        series = [series_ids() for _ in range(count)]
        patients.append(Patient(number, split, ids(), series, grades, masked))
    return patients


@dataclass(frozen=True)
class Organ:
    """An ellipsoid in (x, y: share of the slice's side; z: share of the body span)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]

    def inside(self, xx, yy, z: float) -> np.ndarray:
        cx, cy, cz = self.centre
        rx, ry, rz = self.radii
        along = 1 - ((z - cz) / rz) ** 2
        if along <= 0:
            return np.zeros(xx.shape, bool)
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < along


@dataclass(frozen=True)
class Injury:
    """A small sphere: (x, y) share of the side, z share of the span, radius share of the side."""

    organ: str
    x: float
    y: float
    z: float
    radius: float
    hu: float


@dataclass(frozen=True)
class Abdomen:
    organs: dict[str, Organ]
    bowel: list[Organ]  # loops
    injuries: list[Injury]

    @classmethod
    def draw(cls, rng: np.random.Generator, grades: dict[str, int]) -> Abdomen:
        def jitter(x, y, z):
            return (x + rng.uniform(-0.05, 0.05), y + rng.uniform(-0.04, 0.04),
                    z + rng.uniform(-0.08, 0.08))  # fmt: skip

        scale = rng.uniform(0.9, 1.1)
        organs = {
            "liver": Organ(jitter(0.33, 0.45, 0.3), (0.16 * scale, 0.13 * scale, 0.26)),
            "spleen": Organ(jitter(0.7, 0.47, 0.3), (0.075 * scale, 0.085 * scale, 0.17)),
            "kidney_left": Organ(jitter(0.66, 0.6, 0.55), (0.055, 0.075, 0.15)),
            "kidney_right": Organ(jitter(0.34, 0.6, 0.58), (0.055, 0.075, 0.15)),
        }
        loops = [
            Organ(
                jitter(0.5 + rng.uniform(-0.15, 0.15), 0.38, 0.72 + rng.uniform(-0.1, 0.1)),
                (0.045, 0.04, 0.12),
            )  # fmt: skip
            for _ in range(4)
        ]
        injuries = []
        for organ, grade in grades.items():
            if grade == 0:
                continue
            if organ in TRIPLE:
                name = organ if organ != "kidney" else rng.choice(["kidney_left", "kidney_right"])
                home = organs[name]
                radius = INJURY_RADIUS[GRADES[organ][grade]]
                hu = HU["laceration"]
            else:  # a bright spot in a loop, or a blush in the liver or spleen
                home = loops[0] if organ == "bowel" else organs[rng.choice(["liver", "spleen"])]
                radius, hu = 0.022, HU["blush"]
            cx, cy, cz = home.centre
            rx, ry, rz = home.radii
            injuries.append(Injury(organ, cx + rng.uniform(-0.4, 0.4) * rx,
                                   cy + rng.uniform(-0.4, 0.4) * ry,
                                   cz + rng.uniform(-0.3, 0.3) * rz, radius, hu))  # fmt: skip
        return cls(organs, loops, injuries)

    def slice(self, size: int, z: float, spacing_z: float):
        """(HU (size, size) float32, mask (size, size) int16, the injuries this slice shows)."""
        yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
        hu = np.full((size, size), -1000.0, np.float32)
        body = ((xx - 0.5) / 0.44) ** 2 + ((yy - 0.52) / 0.34) ** 2 < 1
        hu[body] = HU["fat"]
        hu[body & (((xx - 0.5) / 0.4) ** 2 + ((yy - 0.52) / 0.3) ** 2 < 1)] = HU["body"]
        mask = np.zeros((size, size), np.int16)
        for name, organ in self.organs.items():
            inside = organ.inside(xx, yy, z)
            hu[inside] = HU[name.split("_")[0]]
            mask[inside] = MASK_VALUES[name]
        for loop in self.bowel:
            inside = loop.inside(xx, yy, z)
            lumen = Organ(loop.centre, tuple(r * 0.6 for r in loop.radii)).inside(xx, yy, z)
            hu[inside] = HU["bowel_wall"]
            hu[lumen] = HU["lumen"]
            mask[inside] = MASK_VALUES["bowel"]
        hu[(xx - 0.5) ** 2 + (yy - 0.72) ** 2 < 0.06**2] = HU["bone"]
        hu[(xx - 0.5) ** 2 + (yy - 0.6) ** 2 < 0.025**2] = HU["aorta"]
        shown = []
        for injury in self.injuries:
            across = injury.radius**2 - ((z - injury.z) * spacing_z) ** 2
            if across <= 0:
                continue
            spot = (xx - injury.x) ** 2 + (yy - injury.y) ** 2 < across
            hu[spot] = injury.hu
            shown.append(injury.organ)
        return hu, mask, shown


def _template(patient: Patient, series_id: str, size: int, signed: bool) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.Modality = "CT"
    ds.PatientID = patient.patient_id
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.{patient.patient_id}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.{patient.patient_id}.{series_id}"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [round(FOV_MM / size, 6)] * 2
    ds.SliceThickness = SLICE_MM
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    return ds


def _stored(hu: np.ndarray, signed: bool) -> bytes:
    values = np.rint(hu + 1024)
    if signed:
        return np.clip(values, -32768, 32767).astype(np.int16).tobytes()
    return np.clip(values, 0, 4095).astype(np.uint16).tobytes()


def _write_mask(path, masks: np.ndarray, affine: np.ndarray, rng) -> None:
    """(slices, rows, columns) as a NIfTI (columns, rows, slices) array, one axis
    flipped for some files (the affine follows)."""
    import nibabel

    from competition.fileio import atomic_path

    data = np.transpose(masks, (2, 1, 0))
    flip = int(rng.integers(0, 4))  # 3: none
    if flip < 3:
        data = np.flip(data, axis=flip)
        turn = np.eye(4)
        turn[flip, flip], turn[flip, 3] = -1, data.shape[flip] - 1
        affine = affine @ turn
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".nii") as tmp:
        nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(data), affine), str(tmp))


def _series(patient, k, abdomen, synth, layout, rng) -> tuple[list, list]:
    """Write one series; returns (its meta row, its image-level rows)."""
    series_id, size = patient.series[k], synth.image_size
    n = int(rng.integers(synth.slices_per_series[0], synth.slices_per_series[1] + 1))
    start = rng.uniform(-0.06, 0.06) + (0.03 if k else 0.0)
    zs = start + np.arange(n) / (n - 1) * 1.0  # shares of the body span, head first
    signed = bool(rng.random() < 0.5)
    template = _template(patient, series_id, size, signed)
    folder = layout.image_dir(patient.split) / patient.patient_id / series_id
    folder.mkdir(parents=True, exist_ok=True)
    from_feet = rng.random() < 0.3
    encoding = RLELossless if rng.random() < RLE_SHARE else None
    spacing_z = SLICE_MM * (n - 1) / FOV_MM  # a share of the span -> of the slice's side
    x0, y0 = -FOV_MM / 2 + rng.uniform(-10, 10), -FOV_MM / 2 + rng.uniform(-10, 10)
    z0 = float(rng.uniform(-200, 200))
    masks, image_rows, noise = [], [], synth.noise_hu
    for i, z in enumerate(zs):
        hu, mask, shown = abdomen.slice(size, float(z), spacing_z)
        hu = hu + 25 * smooth_noise(rng, hu.shape, size / 10)
        hu += rng.standard_normal(hu.shape).astype(np.float32) * noise
        number = n - i if from_feet else i + 1
        ds = copy.deepcopy(template)
        ds.file_meta = file_meta(CTImageStorage, f"{patient.patient_id}.{series_id}.{number}")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(z0 - SLICE_MM * i, 4)]
        ds.PixelData = _stored(hu, signed)
        if encoding is not None:
            ds.compress(encoding, generate_instance_uid=False)
        ds.save_as(folder / f"{number}.dcm", enforce_file_format=True)
        masks.append(mask)
        image_rows += [[patient.patient_id, series_id, number, IMAGE_LEVEL[o]]
                       for o in sorted(set(shown)) if o in IMAGE_LEVEL]  # fmt: skip
    stack = np.stack(masks)
    if patient.masked[k]:
        pixel = FOV_MM / size
        lps = np.array([[pixel, 0, 0, x0], [0, pixel, 0, y0], [0, 0, -SLICE_MM, z0], [0, 0, 0, 1]])
        rng_mask = np.random.default_rng([synth.seed, 2, patient.number, k])
        path = layout.root / "segmentations" / f"{series_id}.nii"
        _write_mask(path, stack, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, rng_mask)
    present = {int(v) for v in np.unique(stack) if v}
    cut = {int(v) for v in np.unique(np.concatenate([stack[0].ravel(), stack[-1].ravel()])) if v}
    incomplete = int(bool(cut) or len(present) < len(MASK_VALUES))  # an organ cut off or missing
    aortic = round(float(HU["aorta"] + rng.normal(0, 30)), 1)
    return [patient.patient_id, series_id, aortic, incomplete], image_rows


def write(patient: Patient, synth: SynthConfig, layout: Layout) -> list[list]:
    """Render one patient's series; returns its row: [patient, split, labels,
    series meta rows, image-level rows]."""
    rng = np.random.default_rng([synth.seed, 1, patient.number])
    abdomen = Abdomen.draw(rng, patient.grades)
    meta, image_rows = [], []
    for k in range(len(patient.series)):
        row, images = _series(patient, k, abdomen, synth, layout, rng)
        meta.append(row)
        image_rows += images
    labels = []
    for organ in (*BINARY, *TRIPLE):
        labels += [int(g == patient.grades[organ]) for g in range(len(GRADES[organ]))]
    any_injury = int(any(patient.grades[o] > 0 for o in SHARES))
    return [[patient.patient_id, patient.split, *labels, any_injury, meta, image_rows]]


def write_tables(rows: list[list], layout: Layout) -> pd.DataFrame:
    """train.csv, the series meta, the image-level labels, the sample
    submission; returns the test labels in train.csv's format."""
    frame = pd.DataFrame(rows, columns=["patient_id", "split", *LABELS, "meta", "images"])
    root = layout.root
    for name in ("train", "test"):
        chosen = frame[frame.split == name]
        meta = pd.DataFrame(
            [r for found in chosen.meta for r in found],
            columns=["patient_id", "series_id", "aortic_hu", "incomplete_organ"],
        )
        if name == "test":
            meta = meta.drop(columns="incomplete_organ")
        write_csv_atomic(root / f"{name}_series_meta.csv", meta)
    train = frame[frame.split == "train"]
    images = [r for found in train.images for r in found]
    columns = ["patient_id", "series_id", "instance_number", "injury_name"]
    write_csv_atomic(root / "image_level_labels.csv", pd.DataFrame(images, columns=columns))
    write_csv_atomic(layout.train_csv, train[["patient_id", *LABELS]])
    test = frame[frame.split == "test"][["patient_id", *LABELS]]
    sample = test[["patient_id"]].copy()
    for column in LABELS[:-1]:
        sample[column] = 1.0 / len(GRADES[column.rsplit("_", 1)[0]])
    write_csv_atomic(layout.sample_submission, sample)
    return test
