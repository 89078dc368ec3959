"""The APTOS 2019 Blindness Detection stand-in, in the download's layout:
RGB PNG fundus photos of varied sizes at `train_images/<id_code>.png` and
`test_images/...` (12 hex digits, as `000c1434d8d7`), `train.csv`
(id_code,diagnosis), `test.csv` (id_code), `sample_submission.csv`
(id_code,diagnosis).

Each image: the fundus disk on black (sometimes cut at the top and bottom,
as wide photos are), orange-red with a darker rim, the bright optic disc,
the dark macula, vessels from the disc. The grade (0-4, in the real data's
shares by default: 49, 10, 27, 5, 9%) sets how many lesions are drawn, as
Poisson counts whose means overlap between neighbouring grades:
microaneurysms (tiny red dots) from grade 1, haemorrhages (dark blots) and
hard exudates (yellow flecks) from 2, cotton-wool spots (pale patches)
from 3, new vessels (tortuous tufts at the disc) at 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from competition.fileio import write_csv_atomic
from competition.layout import Layout
from competition.synthetic.common import UniqueIds, require_task, smooth_noise, varied_size
from competition.synthetic.common import write_image as save
from competition.synthetic.settings import SynthConfig
from competition.task import TaskSpec

UNIT = "photos"  # what plan() returns, in messages
LABEL = "diagnosis"
SHARES = {"0": 0.49, "1": 0.10, "2": 0.27, "3": 0.05, "4": 0.09}  # APTOS train.csv
# Mean lesion counts per grade: microaneurysms, haemorrhages, exudates, cotton wool, new vessels
MEANS = np.array(
    [
        [0.2, 0, 0, 0, 0],
        [3, 0.5, 0.3, 0, 0],
        [7, 3, 4, 0.4, 0],
        [12, 7, 6, 2.5, 0.2],
        [12, 7, 5, 2, 1.6],
    ]
)


@dataclass
class Photo:
    number: int
    split: str
    id_code: str
    grade: int
    size: int = 1


def check(task: TaskSpec) -> None:
    require_task(task, "fundus", "APTOS 2019", "id_code", [LABEL])


def plan(synth: SynthConfig) -> list[Photo]:
    rng = np.random.default_rng([synth.seed, 0])
    codes = UniqueIds(rng, lambda r: f"{int(r.integers(0, 16**12)):012x}")
    shares = np.array([synth.prevalence.get(k, v) for k, v in SHARES.items()])
    test = set(
        rng.permutation(synth.patients)[: round(synth.patients * synth.test_fraction)].tolist()
    )
    return [
        Photo(
            n,
            "test" if n in test else "train",
            codes(),
            int(rng.choice(5, p=shares / shares.sum())),
        )
        for n in range(synth.patients)
    ]


def _vessels(image, rng, disc, radius) -> None:
    for _ in range(int(rng.integers(6, 10))):
        angle, points = rng.uniform(0, 2 * np.pi), [np.array(disc, np.float32)]
        for _ in range(8):
            angle += rng.normal(0, 0.25)
            step = radius * rng.uniform(0.08, 0.14)
            points.append(points[-1] + step * np.array([np.cos(angle), np.sin(angle)], np.float32))
        width = max(1, round(radius * rng.uniform(0.008, 0.016)))
        cv2.polylines(
            image, [np.round(points).astype(np.int32)], False, (120, 30, 20), width, cv2.LINE_AA
        )


def _spots(image, rng, centre, radius, count, size, colour, blur=False) -> None:
    for _ in range(count):
        r, a = radius * np.sqrt(rng.uniform(0, 0.8)), rng.uniform(0, 2 * np.pi)
        at = (round(centre[0] + r * np.cos(a)), round(centre[1] + r * np.sin(a)))
        extent = max(1, round(radius * size * rng.uniform(0.6, 1.4)))
        if blur:
            patch = np.zeros(image.shape[:2], np.float32)
            cv2.circle(patch, at, extent, 1.0, -1)
            patch = cv2.GaussianBlur(patch, (0, 0), extent / 2)[..., None]
            image[:] = image * (1 - 0.7 * patch) + np.array(colour, np.float32) * 0.7 * patch
        else:
            cv2.circle(image, at, extent, colour, -1, cv2.LINE_AA)


def draw(rng: np.random.Generator, shape: tuple[int, int], grade: int) -> np.ndarray:
    rows, cols = shape
    radius = min(cols * 0.46, rows * rng.uniform(0.46, 0.6))  # cut top and bottom when wide
    centre = (cols / 2 + rng.normal(0, cols * 0.01), rows / 2 + rng.normal(0, rows * 0.01))
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    r = np.hypot(xx - centre[0], yy - centre[1]) / radius
    base = np.array([196, 86, 40], np.float32) + rng.normal(0, 10, 3).astype(np.float32)
    light = np.clip(1.1 - 0.45 * r**2, 0.4, 1.1) + smooth_noise(rng, shape, radius / 4) * 0.06
    image = base[None, None, :] * light[..., None]
    side = 1 if rng.random() < 0.5 else -1  # left or right eye
    disc = (centre[0] + side * radius * 0.38, centre[1] + rng.normal(0, radius * 0.04))
    _vessels(image, rng, disc, radius)
    cv2.circle(
        image, tuple(round(v) for v in disc), round(radius * 0.12), (245, 205, 130), -1, cv2.LINE_AA
    )
    macula = np.exp(
        -((xx - centre[0] + side * radius * 0.05) ** 2 + (yy - centre[1]) ** 2)
        / (2 * (radius * 0.1) ** 2)
    )
    image *= (1 - 0.35 * macula)[..., None]
    counts = rng.poisson(MEANS[grade])
    _spots(image, rng, centre, radius, counts[0], 0.008, (110, 20, 15))
    _spots(image, rng, centre, radius, counts[1], 0.03, (100, 22, 16), blur=True)
    _spots(image, rng, centre, radius, counts[2], 0.012, (235, 210, 90))
    _spots(image, rng, centre, radius, counts[3], 0.045, (230, 200, 170), blur=True)
    for _ in range(counts[4]):  # new vessels: a tortuous tuft near the disc
        tuft = disc + rng.normal(0, radius * 0.12, 2)
        loop = tuft + np.cumsum(rng.normal(0, radius * 0.03, (12, 2)), axis=0)
        cv2.polylines(
            image, [np.round(loop).astype(np.int32)], False, (130, 25, 20), 1, cv2.LINE_AA
        )
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    image[r > 1] = 0
    return np.clip(image, 0, 255).astype(np.uint8)


def write(photo: Photo, synth: SynthConfig, layout: Layout) -> list[dict]:
    rng = np.random.default_rng([synth.seed, 1, photo.number])
    shape = varied_size(rng, synth.image_size, (1.0, 4 / 3, 3 / 2))
    save(layout.image_path(photo.split, photo.id_code), draw(rng, shape, photo.grade))
    return [{"split": photo.split, "id_code": photo.id_code, LABEL: photo.grade}]


def write_tables(rows: list[dict], layout: Layout) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    train, test = (table[table.split == s].drop(columns="split") for s in ("train", "test"))
    write_csv_atomic(layout.train_csv, train)
    write_csv_atomic(layout.test_csv, test[["id_code"]])
    write_csv_atomic(layout.sample_submission, test[["id_code"]].assign(**{LABEL: 0}))
    return test
