"""How an image file becomes model input: the settings (`preprocess` and the
task's image type) as one value, and the model input's shape they make.
NumPy-free, so the config can read the choices without the image stack;
`competition.data.preprocess` does the work."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("ct_windows", "voi_lut", "color", "gray")
DICOM_ONLY = ("ct_windows", "voi_lut")
CROPS = ("none", "foreground")


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
    def from_config(cls, config) -> PixelSpec:
        p = config.preprocess
        size = p.image_size
        shape = (size, size) if isinstance(size, int) else (size[0], size[1])
        return cls(
            image_format=config.task.image_format,
            mode=p.mode,
            windows=tuple((float(c), float(w)) for c, w in p.windows),
            shape=shape,
            keep_aspect=p.keep_aspect,
            crop=p.crop,
            channels=p.channels,
        )

    @property
    def natural_channels(self) -> int:
        return {"ct_windows": len(self.windows), "color": 3}.get(self.mode, 1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.shape, self.channels or self.natural_channels)

    @property
    def fits_plainly(self) -> bool:
        """A plain resize: no crop, no padding."""
        return self.crop == "none" and not self.keep_aspect


def input_shape(config) -> tuple[int, int, int]:
    """(rows, cols, channels) of the model input the config's preprocessing makes."""
    return PixelSpec.from_config(config).input_shape


def model_input_shape(config) -> tuple[int, int, int]:
    """The model's input: one slice's (rows, cols, channels), or the 2.5D
    stack's when preprocess.neighbors > 0 (see competition.data.neighbors)."""
    rows, cols, channels = input_shape(config)
    p = config.preprocess
    width = 2 * p.neighbors + 1
    picks = p.neighbor_windows
    if not p.neighbors:
        return rows, cols, channels
    if picks is None:
        return rows, cols, channels * width
    if picks and isinstance(picks[0], list):
        return rows, cols, sum(len(w) for w in picks)
    return rows, cols, len(picks) * width
