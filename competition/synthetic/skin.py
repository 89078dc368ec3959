"""The SIIM-ISIC Melanoma Classification 2020 stand-in, in the download's layout:
RGB JPEGs of varied sizes at `jpeg/train/ISIC_<7 digits>.jpg` and
`jpeg/test/...` (the task's folders), `train.csv` with the real columns
(image_name, patient_id, sex, age_approx, anatom_site_general_challenge,
diagnosis, benign_malignant, target), `test.csv` (the first five),
`sample_submission.csv` (image_name,target). Patients (`IP_<7 digits>`)
have several images.

Each image: skin of a random tone with smooth shading and pores, a
dermoscope's dark rim, now and then hairs; one lesion. A benign nevus is
round-ish, of one brown, with a smooth border (a fifth are mildly
irregular); a melanoma has an irregular border, two or three colours (dark
brown, black, blue-grey patches; a quarter have none) and is larger on
average (a quarter are small), while a quarter of the nevi have a darker
centre. What separates them is shape and colour, not size or brightness alone.
"""

from __future__ import annotations

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

UNIT = "patients"  # what plan() returns, in messages
LABEL = "target"
TONES = np.array([[232, 190, 172], [214, 164, 136], [188, 140, 108], [150, 104, 76]], np.float32)
SITES = ["torso", "lower extremity", "upper extremity", "head/neck", "palms/soles", "oral/genital"]
BENIGN = ["nevus", "unknown", "seborrheic keratosis", "lentigo NOS", "lichenoid keratosis"]
TEST_COLUMNS = ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge"]


@dataclass
class Patient:
    number: int
    split: str
    patient_id: str
    sex: str
    age: float
    images: list[tuple]  # image_name, target, site (ISIC 2024: isic_id, kind of malignancy)

    @property
    def size(self) -> int:
        return len(self.images)


def check(task: TaskSpec) -> None:
    require_task(task, "skin", "SIIM-ISIC Melanoma", "image_name", [LABEL])


def seeded_ids(synth: SynthConfig, default_rate: float):
    """What the ISIC stand-ins plan with: the generator, lesion and patient
    IDs in ISIC's form, the test patients and the positive rate."""
    rng = np.random.default_rng([synth.seed, 0])
    images = UniqueIds(rng, lambda r: f"ISIC_{int(r.integers(0, 10**7)):07d}")
    patients = UniqueIds(rng, lambda r: f"IP_{int(r.integers(0, 10**7)):07d}")
    test = test_patients(rng, synth.patients, synth.test_fraction)
    return rng, images, patients, test, synth.prevalence.get(LABEL, default_rate)


def plan(synth: SynthConfig) -> list[Patient]:
    rng, images, patients, test, rate = seeded_ids(synth, 0.1)
    low, high = synth.images_per_patient
    plans = []
    for number in range(synth.patients):
        count = int(rng.integers(low, high + 1))
        found = [
            (
                images(),
                int(rng.random() < rate),
                SITES[int(rng.choice(6, p=[0.4, 0.25, 0.15, 0.1, 0.06, 0.04]))],
            )
            for _ in range(count)
        ]
        sex = "male" if rng.random() < 0.52 else "female"
        plans.append(
            Patient(
                number,
                "test" if number in test else "train",
                patients(),
                sex,
                float(5 * rng.integers(4, 18)),
                found,
            )
        )
    return plans


def _outline(rng: np.random.Generator, radius: float, irregularity: float) -> np.ndarray:
    """Radius per angle: a circle bent by a few random harmonics."""
    angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    profile = np.ones_like(angles)
    for k in range(2, 8):
        profile += (
            irregularity
            * rng.uniform(0.2, 1.0)
            / k**0.5
            * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
        )
    return radius * profile, angles


def draw(rng: np.random.Generator, shape: tuple[int, int], malignant: bool) -> np.ndarray:
    rows, cols = shape
    tone = TONES[int(rng.integers(len(TONES)))] + rng.normal(0, 6, 3).astype(np.float32)
    shade = smooth_noise(rng, shape, cols / 3) * 16 + rng.normal(0, 5, shape).astype(np.float32)
    image = tone[None, None, :] + shade[..., None]
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    rim = np.hypot((yy - rows / 2) / (rows / 2), (xx - cols / 2) / (cols / 2))
    image *= np.clip(1.25 - 0.55 * rim, 0.35, 1.0)[..., None]  # the dermoscope's dark rim
    small = malignant and rng.random() < 0.25
    scale = rng.uniform(0.10, 0.2) if small or not malignant else rng.uniform(0.15, 0.3)
    irregular = (
        rng.uniform(0.12, 0.3)
        if malignant
        else rng.uniform(0.02, 0.1 if rng.random() < 0.2 else 0.04)
    )
    radii, angles = _outline(rng, scale * min(rows, cols), irregular)
    centre = (cols / 2 + rng.normal(0, cols * 0.06), rows / 2 + rng.normal(0, rows * 0.06))
    points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, scale * min(rows, cols) * 0.08))
    brown = np.array([120, 78, 52], np.float32) + rng.normal(0, 10, 3).astype(np.float32)
    colour = np.broadcast_to(brown, (*shape, 3)).copy()
    colour += (smooth_noise(rng, shape, 12) * 10)[..., None]
    patches = smooth_noise(rng, shape, max(4, scale * min(rows, cols) / 2))
    if malignant and rng.random() < 0.75:  # two or three colours in patches
        colour[patches > 0.25] = [52, 36, 32]
        if rng.random() < 0.6:
            colour[patches < -0.35] = [112, 116, 138]
    elif rng.random() < 0.25:  # a darker centre: a nevus that looks worse than it is
        colour[patches > 0.45] = [84, 56, 42]
    image = image * (1 - mask[..., None]) + colour * mask[..., None]
    if rng.random() < 0.3:  # hairs
        for _ in range(int(rng.integers(2, 8))):
            start = rng.uniform(0, 1, 2) * (cols, rows)
            bend = start + rng.normal(0, 0.3, 2) * (cols, rows)
            end = bend + rng.normal(0, 0.3, 2) * (cols, rows)
            curve = np.array([start, bend, end], np.int32)
            cv2.polylines(image, [curve], False, (40, 30, 28), int(rng.integers(1, 3)), cv2.LINE_AA)
    return np.clip(image, 0, 255).astype(np.uint8)


def write(patient: Patient, synth: SynthConfig, layout: Layout) -> list[dict]:
    rows = []
    for k, (name, target, site) in enumerate(patient.images):
        rng = np.random.default_rng([synth.seed, 1, patient.number, k])
        shape = varied_size(rng, synth.image_size, (1.0, 4 / 3, 3 / 2))
        save(layout.image_path(patient.split, name), draw(rng, shape, bool(target)))
        diagnosis = (
            "melanoma" if target else BENIGN[int(rng.choice(5, p=[0.6, 0.32, 0.04, 0.02, 0.02]))]
        )
        rows.append(
            {
                "split": patient.split,
                "image_name": name,
                "patient_id": patient.patient_id,
                "sex": patient.sex,
                "age_approx": patient.age,
                "anatom_site_general_challenge": site,
                "diagnosis": diagnosis,
                "benign_malignant": "malignant" if target else "benign",
                LABEL: target,
            }
        )
    return rows


def write_tables(rows: list[dict], layout: Layout) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    train, test = (table[table.split == s].drop(columns="split") for s in ("train", "test"))
    write_csv_atomic(layout.train_csv, train)
    write_csv_atomic(layout.test_csv, test[TEST_COLUMNS])
    write_csv_atomic(layout.sample_submission, test[["image_name"]].assign(**{LABEL: 0}))
    return test
