"""A head-CT phantom in Hounsfield units, with hemorrhages drawn where each
subtype lives. Used by the synthetic competition; labels come from what was
actually drawn on each slice.

Geometry is in pixels of an N x N image; every size is a fraction of N so the
phantom looks the same at any resolution.

What makes it a fair test (each from how real head CT looks):
- brain is not uniform: grey matter (~37 HU) over white (~27 HU) with a
  wavy border, sulci of CSF that widen with age, and a smooth texture of a
  few HU;
- the lowest slices of a series are the skull base: dense bone (petrous
  ridges, clivus), air in the sinuses and mastoid cells, and beam-hardening
  streaks between the dense bones, dark and bright;
- bright things that are not blood: calcified pineal gland and choroid
  plexus (common in adults), and bone edges blurred by the scanner's point
  spread into blood-like values;
- blood from obvious (+45 HU over brain) to barely above the noise (+8 HU,
  a thin or subacute bleed), lesions that grow and shrink along z, with
  partial-volume slices at their ends (part blood, part brain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

LESION_SUBTYPES = (
    "epidural",
    "intraparenchymal",
    "intraventricular",
    "subarachnoid",
    "subdural",
)

AIR, BONE_RANGE, BRAIN, WHITE, CSF, SCALP = (
    -1000.0,
    (700.0, 1500.0),
    33.0,
    27.0,
    6.0,
    45.0,
)
GREY = 37.0
CALCIUM_RANGE = (120.0, 400.0)  # HU of a calcified pineal gland or choroid plexus
# Blood over the brain it lies in, HU: most bleeds are obvious, some subtle.
CONTRAST_OBVIOUS, CONTRAST_SUBTLE, SUBTLE_SHARE = (22.0, 45.0), (8.0, 18.0), 0.3
SKULL_BASE = -0.45  # slices below this position in the series (-1 base .. 1 vertex)
# Slices a lesion spans either side of its centre, per subtype (min, max).
HALF_EXTENT = {
    "epidural": (1, 3),
    "intraparenchymal": (1, 3),
    "intraventricular": (1, 4),
    "subarachnoid": (1, 4),
    "subdural": (2, 6),
}


@dataclass
class Lesion:
    subtype: str
    center: int  # slice index
    half_extent: int
    angle: float  # radians, position around the head
    size: float  # relative size factor
    contrast: float  # HU over the brain at the lesion's full thickness
    side: int = 0  # ventricle for intraventricular (0 left, 1 right)
    partial: float = 0.5  # share of blood in its end slices (partial volume)

    def scale_at(self, index: int) -> float:
        """0 outside the lesion's slices, up to 1 at its centre."""
        d = abs(index - self.center)
        if d > self.half_extent:
            return 0.0
        return math.sqrt(1.0 - (d / (self.half_extent + 1)) ** 2)

    def hu_at(self, index: int) -> float:
        """The blood's HU on a slice: an end slice holds part blood, part brain."""
        share = self.partial if abs(index - self.center) == self.half_extent else 1.0
        return BRAIN + self.contrast * share


@dataclass
class SeriesGeometry:
    size: int
    n_slices: int
    head_a: float  # semi-axes of the head at its widest, pixels
    head_b: float
    center: tuple[float, float]
    tilt: float  # in-plane rotation, degrees
    skull: float  # skull thickness, pixels
    bone: float  # HU
    sulci: np.ndarray  # (k, 2): angle, depth fraction
    sulcus_width: float = 1.0  # pixels at 512 px: wider with age (atrophy)
    gyri: tuple = (7, 0.0, 13, 0.0)  # grey/white border: two waves (count, phase)
    texture: np.ndarray | None = None  # smooth HU field, (2N, 2N), cropped per slice
    pineal: float = 0.0  # HU of a calcified pineal gland (0: not calcified)
    choroid: float = 0.0  # HU of calcified choroid plexus (0: not calcified)
    lesions: list[Lesion] = field(default_factory=list)

    def position(self, index: int) -> float:
        """-1 at the skull base .. 1 at the vertex."""
        return (index + 0.5) / self.n_slices * 2 - 1

    def head_scale(self, index: int) -> float:
        """Head cross-section along the series: small at the base and vertex."""
        t = self.position(index)
        return max(0.35, math.sqrt(max(0.0, 1 - (0.9 * t) ** 2)))

    def ventricle_scale(self, index: int) -> float:
        t = self.position(index)
        return max(0.0, 1 - ((t - 0.1) / 0.45) ** 2)


TEXTURE_HU = 2.5


def smooth_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random field of about TEXTURE_HU standard deviation, (2N, 2N)."""
    small = rng.standard_normal((size // 4, size // 4)).astype(np.float32)
    field = cv2.GaussianBlur(small, (0, 0), max(1.0, size / 256))
    field = cv2.resize(field, (size * 2, size * 2), interpolation=cv2.INTER_CUBIC)
    return field * np.float32(TEXTURE_HU / max(float(field.std()), 1e-6))


def random_geometry(rng: np.random.Generator, size: int, n_slices: int) -> SeriesGeometry:
    calcium = CALCIUM_RANGE
    return SeriesGeometry(
        size=size,
        n_slices=n_slices,
        head_a=size * rng.uniform(0.33, 0.40),
        head_b=size * rng.uniform(0.40, 0.46),
        center=(size * rng.uniform(0.47, 0.53), size * rng.uniform(0.47, 0.53)),
        tilt=rng.uniform(-8, 8),
        skull=size * rng.uniform(0.018, 0.028),
        bone=rng.uniform(*BONE_RANGE),
        sulci=np.column_stack([rng.uniform(0, 2 * math.pi, 24), rng.uniform(0.05, 0.16, 24)]),
        sulcus_width=rng.uniform(1.0, 3.5),
        gyri=(
            int(rng.integers(5, 9)),
            rng.uniform(0, 6.3),
            int(rng.integers(11, 17)),
            rng.uniform(0, 6.3),
        ),
        texture=smooth_texture(rng, size),
        pineal=rng.uniform(*calcium) if rng.random() < 0.6 else 0.0,
        choroid=rng.uniform(*calcium) if rng.random() < 0.5 else 0.0,
    )


def random_lesion(rng: np.random.Generator, subtype: str, center: int) -> Lesion:
    low, high = HALF_EXTENT[subtype]
    return Lesion(
        subtype=subtype,
        center=center,
        half_extent=int(rng.integers(low, high + 1)),
        angle=rng.uniform(0, 2 * math.pi),
        size=rng.uniform(0.5, 1.2),
        contrast=rng.uniform(
            *(CONTRAST_SUBTLE if rng.random() < SUBTLE_SHARE else CONTRAST_OBVIOUS)
        ),
        side=int(rng.integers(0, 2)),
        partial=rng.uniform(0.35, 0.7),
    )


# --- drawing ----------------------------------------------------------------


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _axes(a: float, b: float) -> tuple[int, int]:
    return max(1, round(a)), max(1, round(b))


class SliceCanvas:
    """One slice being drawn: the head's ellipse at this level and helpers
    that place things relative to it."""

    def __init__(self, geo: SeriesGeometry, index: int):
        self.geo = geo
        self.index = index
        s = geo.head_scale(index)
        self.a, self.b = geo.head_a * s, geo.head_b * s
        self.ia, self.ib = self.a - geo.skull, self.b - geo.skull  # inner skull
        self.img = np.full((geo.size, geo.size), AIR, dtype=np.float32)

    def boundary(self, angle: float, inset: float = 0.0) -> tuple[float, float]:
        """A point on the inner skull (moved `inset` pixels inwards)."""
        c, s = math.cos(angle), math.sin(angle)
        rot = math.radians(self.geo.tilt)
        x, y = (self.ia - inset) * c, (self.ib - inset) * s
        cx, cy = self.geo.center
        return (
            cx + x * math.cos(rot) - y * math.sin(rot),
            cy + x * math.sin(rot) + y * math.cos(rot),
        )

    def ellipse(self, center, axes, angle, value, thickness=-1, start=0, end=360) -> None:
        cv2.ellipse(self.img, _pt(*center), _axes(*axes), angle, start, end, value, thickness)

    def draw_head(self) -> None:
        geo = self.geo
        scalp = geo.size * 0.015
        self.ellipse(geo.center, (self.a + scalp, self.b + scalp), geo.tilt, SCALP)
        self.ellipse(geo.center, (self.a, self.b), geo.tilt, geo.bone)
        self.ellipse(geo.center, (self.ia, self.ib), geo.tilt, GREY)
        cv2.fillPoly(self.img, [self.white_matter()], WHITE)
        width = max(1, round(geo.sulcus_width * geo.size / 512))
        for angle, depth in geo.sulci:
            inner = self.boundary(angle, inset=depth * self.ia)
            outer = self.boundary(angle, inset=0)
            cv2.line(self.img, _pt(*outer), _pt(*inner), CSF, width)
        top, bottom = self.boundary(-math.pi / 2), self.boundary(math.pi / 2)
        cv2.line(self.img, _pt(*top), _pt(*bottom), CSF, width)

    def white_matter(self) -> np.ndarray:
        """The grey/white border: an ellipse inside the cortex, made wavy by two gyral waves."""
        n1, p1, n2, p2 = self.geo.gyri
        theta = np.linspace(0, 2 * math.pi, 180, endpoint=False)
        wave = 1 + 0.07 * np.sin(n1 * theta + p1) + 0.04 * np.sin(n2 * theta + p2)
        x, y = (
            self.ia * 0.74 * wave * np.cos(theta),
            self.ib * 0.76 * wave * np.sin(theta),
        )
        rot = math.radians(self.geo.tilt)
        cx, cy = self.geo.center
        points = np.column_stack(
            [
                cx + x * math.cos(rot) - y * math.sin(rot),
                cy + x * math.sin(rot) + y * math.cos(rot),
            ]
        )
        return np.round(points).astype(np.int32)

    def add_texture(self) -> None:
        """The brain's few-HU texture, coherent along z (the crop moves slowly)."""
        field, size = self.geo.texture, self.geo.size
        if field is None:
            return
        offset = (self.index * max(1, size // 64)) % size
        crop = field[offset : offset + size, offset // 2 : offset // 2 + size]
        brain = (self.img > 0) & (self.img < 42)
        self.img[brain] += crop[brain]

    def draw_calcifications(self) -> None:
        """A calcified pineal gland behind the third ventricle and calcified
        choroid plexus in the ventricles' atria: bright, and not blood."""
        v = self.geo.ventricle_scale(self.index)
        if v < 0.4:
            return
        cx, cy = self.geo.center
        r = max(1, round(self.geo.size * 0.007))
        if self.geo.pineal:
            cv2.circle(self.img, _pt(cx, cy + self.ib * 0.28), r, self.geo.pineal, -1)
        if self.geo.choroid:
            for (vx, vy), (_, vb) in self.ventricles():
                cv2.circle(self.img, _pt(vx, vy + vb * 0.75), r, self.geo.choroid, -1)

    def draw_skull_base(self) -> None:
        """The lowest slices: petrous ridges and clivus of dense bone, air in
        the sinuses and mastoid cells, and beam-hardening streaks between the
        dense bones (dark and bright bands over the posterior fossa)."""
        geo, t = self.geo, self.geo.position(self.index)
        if t >= SKULL_BASE:
            return
        f = (SKULL_BASE - t) / (1 + SKULL_BASE)  # 0 at the top of the base .. 1 at the bottom
        cx, cy = geo.center
        bone = geo.bone * 1.2
        ridge = (self.ia * 0.42, self.ia * (0.05 + 0.06 * f))
        tips = []
        for side in (-1, 1):
            centre = (cx + side * self.ia * 0.38, cy + self.ib * 0.22)
            self.ellipse(centre, ridge, geo.tilt + side * 35, bone)
            cv2.circle(
                self.img,
                _pt(centre[0] + side * self.ia * 0.25, centre[1] + self.ib * 0.08),
                max(1, round(self.ia * 0.04)),
                AIR,
                -1,
            )  # mastoid air cells
            tips.append((cx + side * self.ia * 0.12, cy + self.ib * 0.05))
        self.ellipse((cx, cy), (self.ia * 0.06, self.ib * 0.16 * (0.5 + f)), geo.tilt, bone)
        sinus = (cx, cy - self.ib * 0.55)
        self.ellipse(
            sinus,
            (self.ia * 0.24 * (0.4 + f), self.ib * 0.14 * (0.4 + f)),
            geo.tilt,
            bone,
        )
        self.ellipse(
            sinus,
            (self.ia * 0.20 * (0.4 + f), self.ib * 0.11 * (0.4 + f)),
            geo.tilt,
            AIR,
        )
        self.streaks(tips, f)

    def streaks(self, tips, f: float) -> None:
        streak = np.zeros_like(self.img)
        width = max(1, round(self.geo.size / 170))
        (x0, y0), (x1, y1) = tips
        for k, value in ((0.0, -45.0), (0.12, 30.0), (-0.12, -25.0)):
            dy = self.ib * k
            cv2.line(streak, _pt(x0, y0 + dy), _pt(x1, y1 + dy), value * (0.5 + f), width)
            cv2.line(
                streak,
                _pt(x0, y0 + dy),
                _pt(x1 + self.ia * 0.3, y1 + self.ib * 0.5),
                value * 0.6,
                width,
            )
        streak = cv2.GaussianBlur(streak, (0, 0), width)
        soft = (self.img > -50) & (self.img < 100)
        self.img[soft] += streak[soft]

    def ventricles(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """(centre, axes) of the two lateral ventricles at this level, or []."""
        v = self.geo.ventricle_scale(self.index)
        if v < 0.15:
            return []
        cx, cy = self.geo.center
        dx = self.ia * 0.16
        axes = (self.ia * 0.09 * v + 1, self.ib * 0.30 * v + 1)
        return [((cx - dx, cy), axes), ((cx + dx, cy), axes)]

    def draw_ventricles(self) -> None:
        for center, axes in self.ventricles():
            self.ellipse(center, axes, self.geo.tilt, CSF)

    def redraw_skull(self) -> None:
        """Bone over anything drawn past the inner skull."""
        t = self.geo.skull
        self.ellipse(
            self.geo.center,
            (self.a - t / 2, self.b - t / 2),
            self.geo.tilt,
            self.geo.bone,
            thickness=max(1, round(t)),
        )


def _tangent_degrees(canvas: SliceCanvas, angle: float) -> float:
    x0, y0 = canvas.boundary(angle - 0.01)
    x1, y1 = canvas.boundary(angle + 0.01)
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def draw_epidural(canvas: SliceCanvas, lesion: Lesion, k: float) -> bool:
    """Lens-shaped, against the inner skull (half of it hides under the bone)."""
    length = canvas.ia * 0.28 * lesion.size * k
    width = canvas.geo.skull * 1.6 * max(k, 0.5)
    # Centre inside the skull by `inset`: the part past the inner skull
    # (width - inset < skull thickness) is covered when the skull is redrawn.
    center = canvas.boundary(lesion.angle, inset=width - canvas.geo.skull * 0.9)
    canvas.ellipse(
        center,
        (length, width),
        _tangent_degrees(canvas, lesion.angle),
        lesion.hu_at(canvas.index),
    )
    return True


def draw_subdural(canvas: SliceCanvas, lesion: Lesion, k: float) -> bool:
    """A crescent along the inner skull, thickest in its middle."""
    span = 70 * lesion.size * k
    thickness = canvas.ia * 0.07 * lesion.size * k
    mid = math.degrees(lesion.angle)
    for step in (1.0, 0.6, 0.3):
        t = max(1.0, thickness * step)
        half = span * (1.2 - step * 0.6)
        canvas.ellipse(
            canvas.geo.center,
            (canvas.ia - t / 2, canvas.ib - t / 2),
            canvas.geo.tilt,
            lesion.hu_at(canvas.index),
            thickness=max(1, round(t)),
            start=mid - half,
            end=mid + half,
        )
    return thickness >= 1


def draw_subarachnoid(canvas: SliceCanvas, lesion: Lesion, k: float) -> bool:
    """Blood filling the sulci of one region and part of the midline fissure."""
    width = max(2, round(canvas.geo.size / 100 * k * lesion.size))
    for angle, depth in canvas.geo.sulci:
        if abs((angle - lesion.angle + math.pi) % (2 * math.pi) - math.pi) < 1.2:
            inner = canvas.boundary(angle, inset=depth * canvas.ia)
            cv2.line(
                canvas.img,
                _pt(*canvas.boundary(angle)),
                _pt(*inner),
                lesion.hu_at(canvas.index),
                width,
            )
    top = canvas.boundary(-math.pi / 2)
    mid = canvas.boundary(-math.pi / 2, inset=canvas.ib * 0.35 * k)
    cv2.line(canvas.img, _pt(*top), _pt(*mid), lesion.hu_at(canvas.index), width)
    return True


def draw_intraventricular(canvas: SliceCanvas, lesion: Lesion, k: float) -> bool:
    """Blood layering in one lateral ventricle (only where ventricles show)."""
    ventricles = canvas.ventricles()
    if not ventricles:
        return False
    (cx, cy), (va, vb) = ventricles[lesion.side]
    axes = (va * 0.9, vb * 0.55 * max(k, 0.5))
    canvas.ellipse((cx, cy + vb * 0.4), axes, canvas.geo.tilt, lesion.hu_at(canvas.index))
    return True


def draw_intraparenchymal(canvas: SliceCanvas, lesion: Lesion, k: float) -> bool:
    """An irregular blob in the brain, away from skull and ventricles."""
    cx, cy = canvas.geo.center
    r = 0.5
    x = cx + canvas.ia * r * math.cos(lesion.angle)
    y = cy + canvas.ib * r * math.sin(lesion.angle)
    radius = canvas.ia * 0.11 * lesion.size * k
    canvas.ellipse(
        (x, y),
        (radius, radius * 0.7),
        math.degrees(lesion.angle),
        lesion.hu_at(canvas.index),
    )
    canvas.ellipse(
        (x + radius * 0.4, y - radius * 0.3),
        (radius * 0.6, radius * 0.5),
        30,
        lesion.hu_at(canvas.index),
    )
    return radius >= 1


DRAW = {
    "epidural": draw_epidural,
    "intraparenchymal": draw_intraparenchymal,
    "intraventricular": draw_intraventricular,
    "subarachnoid": draw_subarachnoid,
    "subdural": draw_subdural,
}


def point_spread(img: np.ndarray, size: int) -> np.ndarray:
    """The scanner's blur: a bone edge next to brain reads as values blood has."""
    return cv2.GaussianBlur(img, (0, 0), 0.8 * size / 512)


def render_slice(geo: SeriesGeometry, index: int) -> tuple[np.ndarray, np.ndarray]:
    """HU image (float32, no noise) and the five lesion labels drawn on it."""
    canvas = SliceCanvas(geo, index)
    canvas.draw_head()
    canvas.draw_ventricles()
    canvas.add_texture()
    canvas.draw_calcifications()
    labels = np.zeros(len(LESION_SUBTYPES), dtype=np.int8)
    for lesion in geo.lesions:
        k = lesion.scale_at(index)
        if k > 0 and DRAW[lesion.subtype](canvas, lesion, k):
            labels[LESION_SUBTYPES.index(lesion.subtype)] = 1
    canvas.draw_skull_base()
    canvas.redraw_skull()
    return point_spread(canvas.img, geo.size), labels
