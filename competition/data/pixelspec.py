"""How an image file becomes model input: the `preprocess:` section, the
same settings with the task's image type as one value (`PixelSpec`), and
the model input's shape they make (one slice, or a 2.5D stack of its
neighbours). Light (NumPy at most), so the config can read the choices without the
image stack; `competition.data.preprocess` does the work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from competition.data.windows import DEFAULT_WINDOWS
from competition.knobs import knob

MODES = ("ct_windows", "voi_lut", "color", "gray")
DICOM_ONLY = ("ct_windows", "voi_lut")
CROPS = ("none", "foreground")


@dataclass(frozen=True)
class PreprocessConfig:
    mode: Literal[MODES] = "ct_windows"
    windows: list[list[float]] = knob([list(w) for w in DEFAULT_WINDOWS])
    image_size: int | list[int] = knob(256, ge=8)
    keep_aspect: bool = False
    crop: Literal[CROPS] = "none"
    channels: int | None = knob(None, ge=1, le=4)
    neighbors: int = knob(0, ge=0, le=8)
    neighbor_windows: list[int] | list[list[int]] | None = None


@dataclass(frozen=True)
class PixelSpec:
    """How an image file becomes model input (see the module)."""

    image_format: str  # dicom, png, jpeg (the task's path template says)
    mode: str
    windows: tuple[tuple[float, float], ...]
    shape: tuple[int, int]  # rows, cols
    keep_aspect: bool = False
    crop: str = "none"
    channels: int | None = None

    @classmethod
    def of(cls, preprocess: PreprocessConfig, image_format: str) -> PixelSpec:
        size = preprocess.image_size
        shape = (size, size) if isinstance(size, int) else (size[0], size[1])
        return cls(
            image_format=image_format,
            mode=preprocess.mode,
            windows=tuple((float(c), float(w)) for c, w in preprocess.windows),
            shape=shape,
            keep_aspect=preprocess.keep_aspect,
            crop=preprocess.crop,
            channels=preprocess.channels,
        )

    @property
    def natural_channels(self) -> int:
        return {"ct_windows": len(self.windows), "color": 3}.get(self.mode, 1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.shape, self.channels or self.natural_channels)


def model_input_shape(preprocess: PreprocessConfig, image_format: str) -> tuple[int, int, int]:
    """The model's input: one slice's (rows, cols, channels), or the 2.5D
    stack's when preprocess.neighbors > 0 (see competition.data.neighbors)."""
    rows, cols, channels = PixelSpec.of(preprocess, image_format).input_shape
    width = 2 * preprocess.neighbors + 1
    picks = preprocess.neighbor_windows
    if not preprocess.neighbors:
        return rows, cols, channels
    if picks is None:
        return rows, cols, channels * width
    if picks and isinstance(picks[0], list):
        return rows, cols, sum(len(w) for w in picks)
    return rows, cols, len(picks) * width
