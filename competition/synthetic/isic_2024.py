"""The ISIC 2024 (SLICE-3D) stand-in, in the download's layout:
`train-image.hdf5` and `test-image.hdf5` (one scalar dataset of JPEG bytes
per `isic_id`), `train-metadata.csv` (isic_id, target, patient_id, the
lesion's age/sex/site, `tbp_lv_*` colour, shape and size columns, and the
train-only diagnosis columns iddx_*, lesion_id, mel_thick_mm),
`test-metadata.csv` (the columns a kernel gets) and `sample_submission.csv`
(isic_id,target). Many lesions per patient; about 1% positive.

The malignant lesions come in three kinds, so that no one source sees all:
- in the image only: the 2020 stand-in's melanoma drawing (irregular border,
  several colours), with metadata drawn like a benign lesion's;
- in the metadata only: a benign-looking image whose colour-variation
  columns (tbp_lv_color_std_mean, tbp_lv_norm_color, tbp_lv_radial_color_std_max)
  are high for the whole population;
- relative to the patient only ("ugly duckling"): a benign-looking image whose
  hue and size (tbp_lv_H, tbp_lv_areaMM2, clin_size_long_diam_mm) are far
  from the patient's other lesions, while every patient has a baseline of
  their own, spread wider than that step: the absolute value says little.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from competition.fileio import atomic_path, write_csv_atomic
from competition.layout import Layout
from competition.synthetic.common import require_task, varied_size
from competition.synthetic.settings import SynthConfig
from competition.synthetic.skin import Patient, draw, seeded_ids
from competition.task import TaskSpec

UNIT = "patients"
LABEL = "target"
KINDS = ("image", "metadata", "relative")
SITES = ["posterior torso", "lower extremity", "anterior torso", "upper extremity", "head/neck"]
LOCATIONS = {
    "posterior torso": "Torso Back",
    "lower extremity": "Left Leg",
    "anterior torso": "Torso Front",
    "upper extremity": "Right Arm",
    "head/neck": "Head & Neck",
}
TRAIN_ONLY = ["lesion_id", "iddx_full", "iddx_1", "mel_thick_mm", "tbp_lv_dnn_lesion_confidence"]
BYTES = "_jpeg"  # the rows' encoded image, written into the split's HDF5 file


def check(task: TaskSpec) -> None:
    require_task(task, "isic_2024", "ISIC 2024", "isic_id", [LABEL], image_format="hdf5")


def plan(synth: SynthConfig) -> list[Patient]:
    rng, ids, patient_ids, test, rate = seeded_ids(synth, 0.01)
    low, high = synth.images_per_patient
    plans = []
    for number in range(synth.patients):
        lesions = []
        for _ in range(int(rng.integers(low, high + 1))):
            kind = KINDS[int(rng.integers(3))] if rng.random() < rate else None
            lesions.append((ids(), kind))
        sex = "male" if rng.random() < 0.55 else "female"
        age = float(5 * rng.integers(6, 17))
        plans.append(
            Patient(number, "test" if number in test else "train", patient_ids(), sex, age, lesions)
        )
    return plans


def _baseline(rng: np.random.Generator) -> dict[str, float]:
    """The patient's own centre for the columns an ugly duckling stands out on."""
    return {"hue": rng.normal(60, 9), "log_area": rng.normal(2.3, 0.55)}


def _metadata(rng, patient: Patient, base: dict, kind: str | None) -> dict:
    """One lesion's tbp_lv_* columns (kind: which malignancy shows in them)."""
    colour = rng.normal(0, 1) + (3.0 if kind == "metadata" else 0.0)
    hue = base["hue"] + rng.normal(0, 3) + (14.0 if kind == "relative" else 0.0)
    log_area = base["log_area"] + rng.normal(0, 0.18) + (0.9 if kind == "relative" else 0.0)
    area = float(np.exp(log_area))
    diameter = 2 * np.sqrt(area / np.pi) * rng.uniform(1.0, 1.3)
    site = SITES[int(rng.choice(5, p=[0.3, 0.25, 0.2, 0.15, 0.1]))]
    lightness = rng.normal(50, 8)
    return {
        "age_approx": patient.age if rng.random() > 0.01 else np.nan,
        "sex": patient.sex if rng.random() > 0.02 else np.nan,
        "anatom_site_general": site,
        "clin_size_long_diam_mm": round(diameter, 2),
        "image_type": "TBP tile: close-up",
        "tbp_tile_type": "3D: XP" if rng.random() < 0.7 else "3D: white",
        "tbp_lv_A": rng.normal(20, 4),
        "tbp_lv_B": rng.normal(28, 5),
        "tbp_lv_C": rng.normal(35, 6),
        "tbp_lv_H": hue,
        "tbp_lv_L": lightness,
        "tbp_lv_stdL": abs(rng.normal(2.5, 0.8)),
        "tbp_lv_areaMM2": area,
        "tbp_lv_perimeterMM": 2 * np.sqrt(np.pi * area) * rng.uniform(1.0, 1.2),
        "tbp_lv_eccentricity": rng.uniform(0.3, 0.95),
        "tbp_lv_norm_border": np.clip(rng.normal(3, 1.5), 0, 10),
        "tbp_lv_color_std_mean": max(0.0, 1.0 + 0.5 * colour),
        "tbp_lv_norm_color": np.clip(3 + 1.4 * colour + rng.normal(0, 0.5), 0, 10),
        "tbp_lv_radial_color_std_max": max(0.0, 0.8 + 0.4 * colour + rng.normal(0, 0.2)),
        "tbp_lv_deltaLBnorm": rng.normal(7, 2),
        "tbp_lv_symm_2axis": rng.uniform(0.1, 0.6),
        "tbp_lv_location": LOCATIONS[site],
        "tbp_lv_location_simple": LOCATIONS[site].split()[0],
        "attribution": ["Memorial Sloan Kettering", "ACEMID MIA", "Frazer Institute"][
            int(rng.integers(3))
        ],
    }


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    if not ok:
        raise OSError("could not encode a JPEG")
    return data.tobytes()


def write(patient: Patient, synth: SynthConfig, layout: Layout) -> list[dict]:
    """The patient's rows, each with its JPEG bytes (written into the split's
    HDF5 file by write_tables: one file, one writer)."""
    base = _baseline(np.random.default_rng([synth.seed, 2, patient.number]))
    rows = []
    for k, (isic_id, kind) in enumerate(patient.images):
        rng = np.random.default_rng([synth.seed, 1, patient.number, k])
        shape = varied_size(rng, synth.image_size, (1.0, 1.0, 4 / 3))
        image = draw(rng, shape, malignant=kind == "image")
        target = int(kind is not None)
        rows.append(
            {
                "split": patient.split,
                "isic_id": isic_id,
                LABEL: target,
                "patient_id": patient.patient_id,
                **_metadata(rng, patient, base, kind),
                "lesion_id": f"IL_{isic_id[5:]}" if target or rng.random() < 0.05 else np.nan,
                "iddx_full": "Malignant::Melanoma" if target else "Benign",
                "iddx_1": "Malignant" if target else "Benign",
                "mel_thick_mm": round(rng.uniform(0.2, 1.5), 2) if target else np.nan,
                "tbp_lv_dnn_lesion_confidence": rng.uniform(50, 100),
                "copyright_license": "CC-BY",
                BYTES: _jpeg(image),
                "_kind": kind or "",
            }
        )
    return rows


def _write_images(path, rows: pd.DataFrame) -> None:
    """The split's HDF5 file: a scalar bytes dataset per isic_id, as ISIC ships it."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for isic_id, data in zip(rows["isic_id"], rows[BYTES], strict=True):
            handle.create_dataset(isic_id, data=np.bytes_(data))


def write_tables(rows: list[dict], layout: Layout) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for split in ("train", "test"):
        part = table[table.split == split]
        _write_images(layout.image_dir(split), part)
    table = table.drop(columns=[BYTES, "split"]).assign(split=table["split"])
    train, test = (table[table.split == s].drop(columns="split") for s in ("train", "test"))
    write_csv_atomic(layout.train_csv, train.drop(columns="_kind"), float_format="%.5g")
    shown = [c for c in train.columns if c not in (LABEL, "_kind", *TRAIN_ONLY)]
    write_csv_atomic(layout.test_csv, test[shown], float_format="%.5g")
    write_csv_atomic(layout.sample_submission, test[["isic_id"]].assign(**{LABEL: 0.0}))
    return test[["isic_id", LABEL, "patient_id", "_kind"]]
