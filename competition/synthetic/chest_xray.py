"""The RANZCR CLiP 2021 stand-in, in the download's layout: gray chest X-ray
JPEGs of varied sizes at `train/<StudyInstanceUID>.jpg` and `test/...`
(dotted UIDs of up to 64 characters under the 1.2.826.0.1.3680043.8.498
root, as the real ones), `train.csv` (StudyInstanceUID, the 11 label columns,
PatientID), `train_annotations.csv` (StudyInstanceUID, label, data: each
line's points) and `sample_submission.csv` (StudyInstanceUID + the 11
columns). There is no test.csv, as in the real download.

Each image: the body, two dark lungs, the bright spine, mediastinum and
heart (on the image's right), ribs, clavicles, the diaphragm, and the lines
a patient has. A line's label is where its tip lies against that anatomy,
as a radiologist reads it:
- ETT (tube down the trachea): Normal a few cm above the carina; Borderline
  just above it or high in the neck; Abnormal past it into a bronchus;
- NGT (down the oesophagus): Normal with its tip in the stomach below the
  diaphragm; Borderline at the diaphragm; Abnormal turned into a lung;
  Incompletely Imaged running off the bottom edge;
- CVC (from the neck or under the clavicle): Normal ending at the cavo-atrial
  junction; Borderline short of it; Abnormal turned up the neck or across;
- Swan Ganz: a long line through the heart into a pulmonary artery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from competition.fileio import write_csv_atomic
from competition.layout import Layout
from competition.synthetic.common import (
    UniqueIds,
    require_task,
    smooth_noise,
    test_patients,
    varied_size,
)
from competition.synthetic.common import write_image as save
from competition.synthetic.settings import SynthConfig
from competition.task import TaskSpec

UNIT = "studies"  # what plan() returns, in messages
COLUMNS = [
    "ETT - Abnormal",
    "ETT - Borderline",
    "ETT - Normal",
    "NGT - Abnormal",
    "NGT - Borderline",
    "NGT - Incompletely Imaged",
    "NGT - Normal",
    "CVC - Abnormal",
    "CVC - Borderline",
    "CVC - Normal",
    "Swan Ganz Catheter Present",
]
UID_ROOT = "1.2.826.0.1.3680043.8.498."
# device -> (chance of being there, {status: share}); statuses are columns "<device> - <status>"
DEVICES = {
    "ETT": (0.3, {"Normal": 0.78, "Borderline": 0.17, "Abnormal": 0.05}),
    "NGT": (
        0.35,
        {"Normal": 0.6, "Borderline": 0.1, "Incompletely Imaged": 0.17, "Abnormal": 0.13},
    ),
    "CVC": (0.85, {"Normal": 0.62, "Borderline": 0.28, "Abnormal": 0.1}),
}


@dataclass
class Study:
    number: int
    split: str
    uid: str
    patient_id: str
    findings: dict[str, str]  # device -> status ("Swan Ganz" -> "Present")
    size: int = 1


def check(task: TaskSpec) -> None:
    require_task(task, "chest_xray", "RANZCR CLiP", "StudyInstanceUID", COLUMNS)


def _findings(rng: np.random.Generator) -> dict[str, str]:
    found = {}
    for device, (chance, statuses) in DEVICES.items():
        if rng.random() < chance:
            found[device] = str(rng.choice(list(statuses), p=list(statuses.values())))
    if rng.random() < 0.05:
        found["Swan Ganz"] = "Present"
    return found


def plan(synth: SynthConfig) -> list[Study]:
    rng = np.random.default_rng([synth.seed, 0])
    uids = UniqueIds(rng, lambda r: UID_ROOT + "".join(map(str, r.integers(0, 10, 38))).lstrip("0"))
    patients = UniqueIds(rng, lambda r: f"{int(r.integers(0, 16**9)):09x}")
    test = test_patients(rng, synth.patients, synth.test_fraction)
    low, high = synth.images_per_patient
    studies = []
    for patient in range(synth.patients):
        patient_id = patients()
        for _ in range(int(rng.integers(low, high + 1))):
            split = "test" if patient in test else "train"
            studies.append(Study(len(studies), split, uids(), patient_id, _findings(rng)))
    return studies


def _anatomy(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, dict]:
    rows, cols = shape
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    image = np.full(shape, 25.0, np.float32)
    cx = cols / 2 + rng.normal(0, cols * 0.02)
    body = ((xx - cx) / (cols * 0.46)) ** 2 + ((yy - rows * 0.55) / (rows * 0.62)) ** 2 < 1
    image[body] = 120
    marks = {
        "cx": cx,
        "carina": rows * rng.uniform(0.33, 0.38),
        "diaphragm": rows * rng.uniform(0.68, 0.74),
    }
    for side in (-1, 1):  # lungs
        lung = ((xx - cx - side * cols * 0.19) / (cols * 0.15)) ** 2 + (
            (yy - rows * 0.45) / (rows * 0.3)
        ) ** 2 < 1
        image[lung & (yy < marks["diaphragm"])] = 55
    heart = ((xx - cx - cols * 0.06) / (cols * 0.15)) ** 2 + (
        (yy - rows * 0.6) / (rows * 0.12)
    ) ** 2 < 1
    image[heart] = 150
    image[np.abs(xx - cx) < cols * 0.045] = 165  # spine and mediastinum
    for k in range(9):  # ribs
        y = rows * (0.2 + 0.06 * k)
        for side in (-1, 1):
            arc = np.array(
                [
                    [cx + side * cols * 0.05, y],
                    [cx + side * cols * 0.22, y - rows * 0.04],
                    [cx + side * cols * 0.35, y + rows * 0.05],
                ],
                np.int32,
            )
            cv2.polylines(image, [arc], False, 110, max(1, round(rows * 0.012)), cv2.LINE_AA)
    for side in (-1, 1):  # clavicles
        cv2.line(
            image,
            (round(cx + side * cols * 0.03), round(rows * 0.18)),
            (round(cx + side * cols * 0.3), round(rows * 0.13)),
            170,
            max(2, round(rows * 0.014)),
        )
    image += smooth_noise(rng, shape, cols / 10) * 12 + rng.normal(0, 4, shape).astype(np.float32)
    return image, marks


def _ett(rows, cols, m, status, rng) -> list:
    above = {
        "Normal": rng.uniform(0.06, 0.12),
        "Borderline": rng.choice([rng.uniform(0.01, 0.03), rng.uniform(0.2, 0.25)]),
        "Abnormal": -rng.uniform(0.04, 0.08),
    }[status]
    tip_y = m["carina"] - above * rows
    tip_x = m["cx"] - (cols * 0.05 if above < 0 else 0)  # past the carina: into the right bronchus
    return [(m["cx"], 0), (m["cx"], min(tip_y, m["carina"])), (tip_x, tip_y)]


def _ngt(rows, cols, m, status, rng) -> list:
    path = [(m["cx"] + cols * 0.01, 0), (m["cx"] + cols * 0.01, m["carina"])]
    if status == "Abnormal":  # into a lung
        return [*path, (m["cx"] - cols * 0.12, m["carina"] + rows * 0.12)]
    depth = {"Normal": rng.uniform(0.08, 0.14), "Borderline": rng.uniform(-0.02, 0.01)}.get(
        status, 0.4
    )
    path.append((m["cx"] + cols * 0.02, m["diaphragm"]))
    end_y = rows + 5 if status == "Incompletely Imaged" else m["diaphragm"] + depth * rows
    return [*path, (m["cx"] + cols * (0.14 if depth > 0.05 else 0.03), end_y)]


def _cvc(rows, cols, m, status, rng) -> list:
    side = -1 if rng.random() < 0.7 else 1
    start = (m["cx"] + side * cols * 0.3, rows * 0.12)
    junction = (m["cx"] - cols * 0.04, m["carina"] + rows * 0.05)
    if status == "Normal":
        return [start, (m["cx"] + side * cols * 0.08, rows * 0.2), junction]
    if status == "Borderline":
        return [start, (m["cx"] + side * cols * 0.12, rows * 0.2)]
    turn = (m["cx"] + side * cols * 0.07, rows * 0.2)
    return [
        start,
        turn,
        (turn[0] + side * cols * 0.02, rows * 0.03)
        if rng.random() < 0.5
        else (m["cx"] - side * cols * 0.2, rows * 0.22),
    ]


def _swan_ganz(rows, cols, m, rng) -> list:
    return [
        (m["cx"] - cols * 0.3, rows * 0.12),
        (m["cx"] - cols * 0.04, m["carina"] + rows * 0.05),
        (m["cx"] + cols * 0.05, rows * 0.55),
        (m["cx"] + cols * 0.16, rows * 0.4),
    ]


def draw(
    rng: np.random.Generator, shape: tuple[int, int], findings: dict
) -> tuple[np.ndarray, list]:
    rows, cols = shape
    image, marks = _anatomy(rng, shape)
    lines = []
    makers = {"ETT": _ett, "NGT": _ngt, "CVC": _cvc}
    for device, status in findings.items():
        points = (
            _swan_ganz(rows, cols, marks, rng)
            if device == "Swan Ganz"
            else makers[device](rows, cols, marks, status, rng)
        )
        points = np.round(np.array(points) + rng.normal(0, cols * 0.005, (len(points), 2))).astype(
            np.int32
        )
        cv2.polylines(image, [points], False, 235, max(1, round(cols * 0.006)), cv2.LINE_AA)
        label = "Swan Ganz Catheter Present" if device == "Swan Ganz" else f"{device} - {status}"
        lines.append((label, points.tolist()))
    return np.clip(image, 0, 255).astype(np.uint8), lines


def write(study: Study, synth: SynthConfig, layout: Layout) -> list[dict]:
    rng = np.random.default_rng([synth.seed, 1, study.number])
    shape = varied_size(rng, synth.image_size, (0.9, 1.0, 1.1))
    image, lines = draw(rng, shape, study.findings)
    save(layout.image_path(study.split, study.uid), image)
    labels = {column: int(any(label == column for label, _ in lines)) for column in COLUMNS}
    annotations = [{"label": label, "data": json.dumps(points)} for label, points in lines]
    return [
        {
            "split": study.split,
            "StudyInstanceUID": study.uid,
            **labels,
            "PatientID": study.patient_id,
            "annotations": annotations,
        }
    ]


def write_tables(rows: list[dict], layout: Layout) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    train, test = (table[table.split == s].drop(columns="split") for s in ("train", "test"))
    notes = [
        {"StudyInstanceUID": r.StudyInstanceUID, **a}
        for r in train.itertuples()
        for a in r.annotations
    ]
    write_csv_atomic(layout.train_csv, train.drop(columns="annotations"))
    write_csv_atomic(
        layout.root / "train_annotations.csv",
        pd.DataFrame(notes, columns=["StudyInstanceUID", "label", "data"]),
    )
    write_csv_atomic(
        layout.sample_submission, test[["StudyInstanceUID"]].assign(**dict.fromkeys(COLUMNS, 0))
    )
    return test.drop(columns="annotations")
