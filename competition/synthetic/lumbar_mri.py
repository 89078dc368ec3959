"""The RSNA 2024 Lumbar Spine Degenerative Classification stand-in, in the
download's layout: `train_images/<study_id>/<series_id>/<instance_number>.dcm`
(MR, no HU: each series on its own stored scale), three series kinds per
study listed in `train_series_descriptions.csv` (`study_id, series_id,
series_description`: Sagittal T1, Sagittal T2/STIR, Axial T2), `train.csv`
one row per study (`study_id` and 25 `<condition>_<level>` columns of
`Normal/Mild`, `Moderate`, `Severe`, a few empty),
`train_label_coordinates.csv` (`study_id, series_id, instance_number,
condition, level, x, y`: where each label is seen), the test studies'
`test_series_descriptions.csv` and `sample_submission.csv` (`row_id,
normal_mild, moderate, severe`, `row_id` = `<study>_<condition>_<level>`).

Each study is a lumbar spine: five discs L1/L2 .. L5/S1 between vertebral
bodies, the spinal canal behind them. Where a label is seen differs per
study (the spine's height, shift, tilt and disc spacing), and what grades
it is small: the canal's width at a disc on the midline sagittal T2 slices
(spinal canal stenosis), a foramen's size on the lateral sagittal T1
slices (left and right neural foraminal narrowing), a lateral recess's
size on the level's axial T2 slice (left and right subarticular stenosis).
At a whole slice's coarse size these are a pixel or two: a model must find
the level, then look closely. Some studies have no Axial T2 series, some
two; a third of the sagittal series number their files from the other
side (the order is in ImagePositionPatient)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pydicom
from pydicom.uid import MRImageStorage

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

UNIT = "studies"
CONDITIONS = {  # the coordinates CSV's name -> the series kind that shows it
    "Spinal Canal Stenosis": "Sagittal T2/STIR",
    "Left Neural Foraminal Narrowing": "Sagittal T1",
    "Right Neural Foraminal Narrowing": "Sagittal T1",
    "Left Subarticular Stenosis": "Axial T2",
    "Right Subarticular Stenosis": "Axial T2",
}
LEVELS = ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
GRADES = ["Normal/Mild", "Moderate", "Severe"]
KINDS = ["Sagittal T1", "Sagittal T2/STIR", "Axial T2"]
SHARES = {"Spinal Canal Stenosis": [0.72, 0.16, 0.12]}  # the rest: DEFAULT_SHARES
DEFAULT_SHARES = [0.68, 0.2, 0.12]
NO_AXIAL, TWO_AXIAL = 0.05, 0.08  # shares of studies
MISSING_LABEL = 0.02
SLICE_MM = 4.0
# What a grade looks like, as a share of the healthy size (canal width, foramen and recess radius).
GRADE_SIZE = (1.0, 0.45, 0.12)


def column_of(condition: str, level: str) -> str:
    """train.csv's column (and the submission's row suffix) of a condition at a level."""
    name = f"{condition}_{level}".lower()
    return "".join(c if c.isalnum() else "_" for c in name)


LABELS = [column_of(c, lv) for c in CONDITIONS for lv in LEVELS]


@dataclass
class Study:
    number: int
    split: str
    study_id: str
    series: dict[str, list[str]]  # kind -> its series IDs
    grades: dict[str, int]  # label column -> grade position
    missing: set[str] = field(default_factory=set)  # label columns left empty

    @property
    def size(self) -> int:
        return 3 * 15


def check(task: TaskSpec) -> None:
    require_task(task, "lumbar_mri", "RSNA Lumbar Spine 2024", "study_id", LABELS)


def plan(synth: SynthConfig) -> list[Study]:
    rng = np.random.default_rng([synth.seed, 0])
    studies_ids = UniqueIds(rng, lambda r: str(int(r.integers(10**6, 5 * 10**9))))
    series_ids = UniqueIds(rng, lambda r: str(int(r.integers(10**6, 5 * 10**9))))
    test = test_patients(rng, synth.patients, synth.test_fraction)
    studies = []
    for number in range(synth.patients):
        series = {kind: [series_ids()] for kind in KINDS}
        draw = rng.random()
        if draw < NO_AXIAL:
            series["Axial T2"] = []
        elif draw < NO_AXIAL + TWO_AXIAL:
            series["Axial T2"].append(series_ids())
        grades = {}
        for condition in CONDITIONS:
            shares = SHARES.get(condition, DEFAULT_SHARES)
            for level in LEVELS:
                grades[column_of(condition, level)] = int(rng.choice(3, p=shares))
        missing = {c for c in LABELS if rng.random() < MISSING_LABEL}
        split = "test" if number in test else "train"
        studies.append(Study(number, split, studies_ids(), series, grades, missing))
    return studies


@dataclass(frozen=True)
class Spine:
    """Where a study's anatomy lies, in pixels of a size x size slice."""

    size: int
    discs: np.ndarray  # (5, 2): each disc's centre (x, y) on the sagittal slices
    canal: float  # the canal's offset behind the discs, in x
    axial_centre: tuple[float, float]  # the canal's centre on the axial slices

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> Spine:
        spacing = size * rng.uniform(0.13, 0.17)
        top = size * rng.uniform(0.16, 0.26)
        tilt = rng.uniform(-0.25, 0.25)
        x0 = size * rng.uniform(0.38, 0.5)
        ys = top + spacing * np.arange(5)
        xs = x0 + tilt * (ys - ys.mean()) + size * 0.015 * ((ys - ys.mean()) / spacing) ** 2
        centre = (size * rng.uniform(0.44, 0.56), size * rng.uniform(0.56, 0.66))
        return cls(size, np.stack([xs, ys], axis=1), size * 0.14, centre)


def _disc(values, xx, yy, cx, cy, rx, ry, value):
    values[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1] = value


def _sagittal(spine: Spine, side: float, kind: str, grades: dict[str, int]) -> np.ndarray:
    """One sagittal slice at lateral position `side` (-1 patient right .. 1 left)."""
    s = spine.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    t1 = kind == "Sagittal T1"
    values = np.full((s, s), 260.0 if t1 else 200.0, np.float32)
    spacing = float(np.diff(spine.discs[:, 1]).mean())
    width = s * 0.09
    for k in range(6):  # vertebral bodies around the discs
        y = spine.discs[0, 1] + spacing * (k - 0.5)
        x = np.interp(y, spine.discs[:, 1], spine.discs[:, 0])
        box = (np.abs(xx - x) < width) & (np.abs(yy - y) < spacing * 0.36)
        values[box] = 620.0 if t1 else 420.0
    for x, y in spine.discs:
        _disc(values, xx, yy, x, y, width * 0.95, spacing * 0.13, 300.0 if t1 else 560.0)
    midline = max(0.0, 1 - abs(side) / 0.35)
    if midline > 0:  # the canal: bright CSF on T2, dark on T1
        canal_x = np.interp(yy, spine.discs[:, 1], spine.discs[:, 0]) + spine.canal
        half = np.full_like(yy, s * 0.032)
        for level, (_, y) in zip(LEVELS, spine.discs, strict=True):
            grade = grades[column_of("Spinal Canal Stenosis", level)]
            pinch = np.exp(-(((yy - y) / (s * 0.018)) ** 2))
            half = half * (1 - pinch * (1 - GRADE_SIZE[grade]))
        inside = np.abs(xx - canal_x) < half
        values[inside] = values[inside] * (1 - midline) + midline * (180.0 if t1 else 900.0)
    if t1:
        for condition, centre in (
            ("Left Neural Foraminal Narrowing", 0.65),
            ("Right Neural Foraminal Narrowing", -0.65),
        ):
            shown = max(0.0, 1 - abs(side - centre) / 0.25)
            if shown <= 0:
                continue
            for level, (x, y) in zip(LEVELS, spine.discs, strict=True):
                grade = grades[column_of(condition, level)]
                radius = s * 0.035 * GRADE_SIZE[grade] * shown
                if radius > 0.3:
                    _disc(
                        values,
                        xx,
                        yy,
                        x + spine.canal * 0.7,
                        y - spacing * 0.15,
                        radius,
                        radius * 1.3,
                        900.0,
                    )
    return values


def _axial(spine: Spine, nearest: float, level: str, grades: dict[str, int]) -> np.ndarray:
    """One axial slice `nearest` slices from the disc of `level` (0: on it)."""
    s = spine.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    values = np.full((s, s), 200.0, np.float32)
    cx, cy = spine.axial_centre
    k = LEVELS.index(level)  # lower levels: a wider body, and the iliac wings from L4/L5 down
    _disc(values, xx, yy, s * 0.5, s * 0.5, s * (0.38 + 0.02 * k), s * 0.36, 320.0)
    _disc(values, xx, yy, cx, cy - s * 0.2, s * (0.13 + 0.015 * k), s * 0.13, 450.0)
    if k >= 3:
        for sign in (-1, 1):
            _disc(
                values,
                xx,
                yy,
                cx + sign * s * 0.3,
                cy - s * 0.05,
                s * 0.05 * (k - 2),
                s * 0.12,
                600.0,
            )
    _disc(values, xx, yy, cx, cy, s * 0.06, s * 0.05, 900.0)  # the canal
    shown = max(0.0, 1 - abs(nearest) / 1.5)
    for condition, sign in (("Left Subarticular Stenosis", 1), ("Right Subarticular Stenosis", -1)):
        grade = grades[column_of(condition, level)]
        radius = s * 0.03 * GRADE_SIZE[grade] * shown
        if radius > 0.3:
            _disc(values, xx, yy, cx + sign * s * 0.075, cy + s * 0.045, radius, radius, 900.0)
    return values


def _finish(values, rng, synth: SynthConfig) -> np.ndarray:
    """Texture, a few bright specks that are not anatomy, noise."""
    s = values.shape[0]
    values = values + 60 * smooth_noise(rng, values.shape, s / 8)
    for _ in range(int(rng.integers(2, 6))):
        x, y = rng.uniform(0.05, 0.95, size=2) * s
        yy, xx = np.ogrid[0:s, 0:s]
        values[(xx - x) ** 2 + (yy - y) ** 2 < (s * rng.uniform(0.01, 0.03)) ** 2] += 500
    return values + rng.standard_normal(values.shape).astype(np.float32) * synth.noise_hu


def _template(
    study: Study, series_id: str, kind: str, size: int, spacing: float
) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.Modality = "MR"
    ds.SeriesDescription = kind
    ds.PatientID = study.study_id
    ds.StudyInstanceUID = study.study_id
    ds.SeriesInstanceUID = series_id
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0] if kind == "Axial T2" else [0, 1, 0, 0, 0, -1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [round(spacing, 6)] * 2
    ds.SliceThickness = SLICE_MM
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def _save(template, study, series_id, number, position, pixels, folder) -> None:
    ds = copy.deepcopy(template)  # Dataset.copy() is shallow
    ds.file_meta = file_meta(MRImageStorage, f"{study.study_id}.{series_id}.{number}")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    ds.PixelData = pixels
    ds.save_as(folder / f"{number}.dcm", enforce_file_format=True)


def _stored(values: np.ndarray, gain: float, offset: float) -> bytes:
    return np.clip(np.rint(values * gain + offset), 0, 65535).astype(np.uint16).tobytes()


def _sagittal_series(study, series_id, kind, spine, synth, layout, rng) -> list[list]:
    """Write one sagittal series; returns its coordinates rows."""
    n = int(rng.integers(synth.slices_per_series[0], synth.slices_per_series[1] + 1))
    sides = np.linspace(-1, 1, n)  # patient right (low x) to left
    reverse = rng.random() < 0.33
    gain, offset = float(rng.uniform(0.5, 3.0)), float(rng.uniform(0, 200))
    spacing = float(rng.uniform(0.55, 0.8))
    template = _template(study, series_id, kind, spine.size, spacing)
    folder = layout.image_dir(study.split) / study.study_id / series_id
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [n - i if reverse else i + 1 for i in range(n)]
    for i in range(n):
        values = _finish(_sagittal(spine, sides[i], kind, study.grades), rng, synth)
        position = [SLICE_MM * (i - n / 2), -spine.size * spacing / 2, spine.size * spacing / 2]
        _save(
            template, study, series_id, numbers[i], position, _stored(values, gain, offset), folder
        )
    rows = []
    for condition, shown_on in CONDITIONS.items():
        if shown_on != kind:
            continue
        centre = {"Left": 0.65, "Right": -0.65}.get(condition.split()[0], 0.0)
        slice_at = int(np.argmin(np.abs(sides - centre)))
        for level, (x, y) in zip(LEVELS, spine.discs, strict=True):
            if kind == "Sagittal T1":
                x, y = x + spine.canal * 0.7, y - float(np.diff(spine.discs[:, 1]).mean()) * 0.15
            else:
                x = x + spine.canal
            rows.append(
                [
                    study.study_id,
                    series_id,
                    numbers[slice_at],
                    condition,
                    level,
                    round(float(x), 3),
                    round(float(y), 3),
                ]
            )
    return rows


def _axial_series(study, series_id, spine, synth, layout, rng) -> list[list]:
    """Write one axial series (3 slices around each disc, gaps between);
    returns its coordinates rows."""
    at = np.arange(5) * 3.5 + 1 + rng.integers(-1, 2, size=5) * 0.3
    n = int(np.ceil(at[-1])) + 2
    gain, offset = float(rng.uniform(0.5, 3.0)), float(rng.uniform(0, 200))
    spacing = float(rng.uniform(0.55, 0.8))
    template = _template(study, series_id, "Axial T2", spine.size, spacing)
    folder = layout.image_dir(study.split) / study.study_id / series_id
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = int(np.argmin(np.abs(at - i)))
        values = _finish(_axial(spine, i - at[k], LEVELS[k], study.grades), rng, synth)
        position = [-spine.size * spacing / 2, -spine.size * spacing / 2, -SLICE_MM * i]
        _save(template, study, series_id, i + 1, position, _stored(values, gain, offset), folder)
    rows = []
    cx, cy = spine.axial_centre
    for condition, sign in (("Left Subarticular Stenosis", 1), ("Right Subarticular Stenosis", -1)):
        for k, level in enumerate(LEVELS):
            x, y = cx + sign * spine.size * 0.075, cy + spine.size * 0.045
            rows.append(
                [
                    study.study_id,
                    series_id,
                    int(np.rint(at[k])) + 1,
                    condition,
                    level,
                    round(float(x), 3),
                    round(float(y), 3),
                ]
            )
    return rows


def write(study: Study, synth: SynthConfig, layout: Layout) -> list[list]:
    """Render one study's series; returns its row: [study, split, labels,
    coordinates rows, series rows]."""
    rng = np.random.default_rng([synth.seed, 1, study.number])
    spine = Spine.draw(rng, synth.image_size)
    points, series_rows = [], []
    for kind, ids in study.series.items():
        for k, series_id in enumerate(ids):
            if kind == "Axial T2":
                found = _axial_series(study, series_id, spine, synth, layout, rng)
            else:
                found = _sagittal_series(study, series_id, kind, spine, synth, layout, rng)
            points += found if k == 0 else []  # a study's labels are marked on one series
            series_rows.append([study.study_id, series_id, kind])
    labels = [None if c in study.missing else GRADES[study.grades[c]] for c in LABELS]
    points = [p for p in points if column_of(p[3], p[4]) not in study.missing]
    return [[study.study_id, study.split, *labels, points, series_rows]]


def write_tables(rows: list[list], layout: Layout) -> pd.DataFrame:
    """train.csv, the series descriptions, the coordinates, the sample
    submission; returns the test labels in train.csv's format."""
    frame = pd.DataFrame(rows, columns=["study_id", "split", *LABELS, "points", "series"])
    split = {sid: s for sid, s in zip(frame.study_id, frame.split, strict=True)}
    described = pd.DataFrame(
        [r for found in frame.series for r in found],
        columns=["study_id", "series_id", "series_description"],
    )
    root = layout.root
    for name in ("train", "test"):
        chosen = described[described.study_id.map(split) == name]
        write_csv_atomic(root / f"{name}_series_descriptions.csv", chosen)
    train = frame[frame.split == "train"]
    points = [p for found in train.points for p in found]
    columns = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    write_csv_atomic(root / "train_label_coordinates.csv", pd.DataFrame(points, columns=columns))
    write_csv_atomic(layout.train_csv, train[["study_id", *LABELS]])
    test = frame[frame.split == "test"][["study_id", *LABELS]]
    row_ids = [f"{study}_{column}" for study in test.study_id for column in LABELS]
    sample = pd.DataFrame(
        {"row_id": row_ids, "normal_mild": 1 / 3, "moderate": 1 / 3, "severe": 1 / 3}
    )
    write_csv_atomic(layout.sample_submission, sample)
    return test
