"""A head-CT phantom in Hounsfield units, with hemorrhages drawn where each
subtype lives. Used by the synthetic competition; labels come from what was
actually drawn on each slice.

Geometry is in pixels of an N x N image; every size is a fraction of N so the
phantom looks the same at any resolution.
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

AIR, BONE_RANGE, BRAIN, WHITE, CSF, SCALP = -1000.0, (700.0, 1500.0), 36.0, 27.0, 6.0, 45.0
BLOOD_RANGE = (55.0, 85.0)
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
    blood: float  # HU
    side: int = 0  # ventricle for intraventricular (0 left, 1 right)

    def scale_at(self, index: int) -> float:
        """0 outside the lesion's slices, up to 1 at its centre."""
        d = abs(index - self.center)
        if d > self.half_extent:
            return 0.0
        return math.sqrt(1.0 - (d / (self.half_extent + 1)) ** 2)


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
    lesions: list[Lesion] = field(default_factory=list)

    def head_scale(self, index: int) -> float:
        """Head cross-section along the series: small at the base and vertex."""
        t = (index + 0.5) / self.n_slices * 2 - 1  # -1 (base) .. 1 (vertex)
        return max(0.35, math.sqrt(max(0.0, 1 - (0.9 * t) ** 2)))

    def ventricle_scale(self, index: int) -> float:
        t = (index + 0.5) / self.n_slices * 2 - 1
        return max(0.0, 1 - ((t - 0.1) / 0.45) ** 2)


def random_geometry(rng: np.random.Generator, size: int, n_slices: int) -> SeriesGeometry:
    return SeriesGeometry(
        size=size,
        n_slices=n_slices,
        head_a=size * rng.uniform(0.33, 0.40),
        head_b=size * rng.uniform(0.40, 0.46),
        center=(size * rng.uniform(0.47, 0.53), size * rng.uniform(0.47, 0.53)),
        tilt=rng.uniform(-8, 8),
        skull=size * rng.uniform(0.018, 0.028),
        bone=rng.uniform(*BONE_RANGE),
        sulci=np.column_stack([rng.uniform(0, 2 * math.pi, 10), rng.uniform(0.06, 0.14, 10)]),
    )


def random_lesion(rng: np.random.Generator, subtype: str, center: int) -> Lesion:
    low, high = HALF_EXTENT[subtype]
    return Lesion(
        subtype=subtype,
        center=center,
        half_extent=int(rng.integers(low, high + 1)),
        angle=rng.uniform(0, 2 * math.pi),
        size=rng.uniform(0.7, 1.2),
        blood=rng.uniform(*BLOOD_RANGE),
        side=int(rng.integers(0, 2)),
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
        self.ellipse(geo.center, (self.ia, self.ib), geo.tilt, BRAIN)
        self.ellipse(geo.center, (self.ia * 0.72, self.ib * 0.75), geo.tilt, WHITE)
        for angle, depth in geo.sulci:
            inner = self.boundary(angle, inset=depth * self.ia)
            outer = self.boundary(angle, inset=0)
            cv2.line(self.img, _pt(*outer), _pt(*inner), CSF, max(1, round(geo.size / 256)))
        top, bottom = self.boundary(-math.pi / 2), self.boundary(math.pi / 2)
        cv2.line(self.img, _pt(*top), _pt(*bottom), CSF, max(1, round(geo.size / 256)))

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
    canvas.ellipse(center, (length, width), _tangent_degrees(canvas, lesion.angle), lesion.blood)
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
            lesion.blood,
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
            cv2.line(canvas.img, _pt(*canvas.boundary(angle)), _pt(*inner), lesion.blood, width)
    top = canvas.boundary(-math.pi / 2)
    mid = canvas.boundary(-math.pi / 2, inset=canvas.ib * 0.35 * k)
    cv2.line(canvas.img, _pt(*top), _pt(*mid), lesion.blood, width)
    return True


def draw_intraventricular(canvas: SliceCanvas, lesion: Lesion, k: float) -> bool:
    """Blood layering in one lateral ventricle (only where ventricles show)."""
    ventricles = canvas.ventricles()
    if not ventricles:
        return False
    (cx, cy), (va, vb) = ventricles[lesion.side]
    axes = (va * 0.9, vb * 0.55 * max(k, 0.5))
    canvas.ellipse((cx, cy + vb * 0.4), axes, canvas.geo.tilt, lesion.blood)
    return True


def draw_intraparenchymal(canvas: SliceCanvas, lesion: Lesion, k: float) -> bool:
    """An irregular blob in the brain, away from skull and ventricles."""
    cx, cy = canvas.geo.center
    r = 0.5
    x = cx + canvas.ia * r * math.cos(lesion.angle)
    y = cy + canvas.ib * r * math.sin(lesion.angle)
    radius = canvas.ia * 0.11 * lesion.size * k
    canvas.ellipse((x, y), (radius, radius * 0.7), math.degrees(lesion.angle), lesion.blood)
    canvas.ellipse(
        (x + radius * 0.4, y - radius * 0.3), (radius * 0.6, radius * 0.5), 30, lesion.blood
    )
    return radius >= 1


DRAW = {
    "epidural": draw_epidural,
    "intraparenchymal": draw_intraparenchymal,
    "intraventricular": draw_intraventricular,
    "subarachnoid": draw_subarachnoid,
    "subdural": draw_subdural,
}


def render_slice(geo: SeriesGeometry, index: int) -> tuple[np.ndarray, np.ndarray]:
    """HU image (float32, no noise) and the five lesion labels drawn on it."""
    canvas = SliceCanvas(geo, index)
    canvas.draw_head()
    canvas.draw_ventricles()
    labels = np.zeros(len(LESION_SUBTYPES), dtype=np.int8)
    for lesion in geo.lesions:
        k = lesion.scale_at(index)
        if k > 0 and DRAW[lesion.subtype](canvas, lesion, k):
            labels[LESION_SUBTYPES.index(lesion.subtype)] = 1
    canvas.redraw_skull()
    return canvas.img, labels
