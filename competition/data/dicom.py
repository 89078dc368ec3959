"""DICOM -> Hounsfield units (float32) and windowed uint8 images.

Knows the competition's pixel quirks (the 12-bit intercept case, multi-valued
window tags, MONOCHROME1, images of every size) and turns every failure into a
DicomReadError that names the file and the cause: a bad file is never
returned as a zero image.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.config import IGNORE, settings
from pydicom.errors import InvalidDicomError

from competition.data.rawdicom import read_fast
from competition.data.windows import DEFAULT_WINDOWS, window, window_stack
from competition.errors import ImageReadError

PIXEL_DATA = 0x7FE00010
# Values (not the pixel data) larger than this are not read by read_header.
_DEFER_BYTES = 1024
# Bumped whenever load_hu's output could change: caches are keyed by it.
# 2: MR slices of series- and study-level tasks levelled per series.
READER_VERSION = 2
# The pixel fixes load_hu applies; part of the cache key with READER_VERSION.
PIXEL_FIXES = ("12bit_intercept_wrap", "monochrome1_without_rescale")

__all__ = [
    "DEFAULT_WINDOWS",
    "DicomReadError",
    "load_hu",
    "read_header",
    "read_pixels",
    "window",
    "window_stack",
]


class DicomReadError(ImageReadError):
    """A DICOM file that cannot be turned into an image."""


@contextlib.contextmanager
def lenient_uids() -> Iterator[None]:
    """Competitions anonymise UIDs into names that are not valid DICOM UIDs: without
    this pydicom 3 warns on every read and refuses to write them."""
    previous = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = IGNORE
    try:
        yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = previous


def _read(path: str | Path, **kwargs: Any) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, **kwargs)
    except FileNotFoundError:
        raise DicomReadError(path, "file not found") from None
    except InvalidDicomError as exc:
        raise DicomReadError(path, f"not a DICOM file ({exc})") from None
    except Exception as exc:  # pydicom raises many types for a damaged header
        raise DicomReadError(path, f"unreadable header ({type(exc).__name__}: {exc})") from None


def _transfer_syntax(ds: pydicom.Dataset) -> pydicom.uid.UID | None:
    meta = getattr(ds, "file_meta", None)
    return getattr(meta, "TransferSyntaxUID", None)


def _decodable(syntax: pydicom.uid.UID | None) -> bool:
    if syntax is None or not syntax.is_compressed:
        return True
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:
        return False


def pixel_problem(ds: pydicom.Dataset, file_size: int) -> str | None:
    """Why the pixel data cannot be decoded, judged from the header alone
    (missing, truncated, or a transfer syntax with no decoder installed)."""
    if PIXEL_DATA not in ds:
        if "Rows" not in ds:
            return "no image tags and no pixel data (truncated file or not an image)"
        return "no pixel data"
    syntax = _transfer_syntax(ds)
    if not _decodable(syntax):
        return f"no decoder installed for transfer syntax {syntax.name} ({syntax})"
    element = ds._dict[PIXEL_DATA]
    length = getattr(element, "length", None)
    tell = getattr(element, "value_tell", None)
    if (syntax is not None and syntax.is_compressed) or length in (None, 0xFFFFFFFF):
        return None
    if syntax is not None and syntax.is_deflated:
        tell = None  # a position in the inflated stream: the file's size says nothing
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    samples = int(ds.get("SamplesPerPixel", 1))
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        samples = 2  # 4:2:2: two luminance samples share one pair of chroma samples
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    expected = rows * cols * samples * int(ds.get("BitsAllocated", 16)) // 8 * frames
    if length < expected or (tell is not None and tell + length > file_size):
        available = min(length, file_size - tell) if tell is not None else length
        return f"truncated pixel data ({available} of {expected} bytes)"
    return None


def _z_position(ds: pydicom.Dataset) -> float:
    """Where the slice lies along the body axis: ImagePositionPatient
    projected on the slice normal (the cross product of the row and column
    directions of ImageOrientationPatient), which orders sagittal, coronal
    and tilted series as well as axial ones; the raw z without an
    orientation; SliceLocation without a position."""
    position = ds.get("ImagePositionPatient")
    if position is not None and len(position) == 3:
        orientation = ds.get("ImageOrientationPatient")
        if orientation is not None and len(orientation) == 6:
            normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
            length = float(np.linalg.norm(normal))
            if length > 1e-6:
                return float(np.dot(normal / length, np.asarray(position, float)))
        return float(position[2])
    location = ds.get("SliceLocation")
    return float(location) if location is not None else float("nan")


def _frame_positions(ds: pydicom.Dataset) -> list[float] | None:
    """A multi-frame file's position of each frame along its normal (the
    per-frame ImagePositionPatient on the shared or per-frame orientation),
    or None when the frames carry no position (they are then in order)."""
    frames = ds.get("PerFrameFunctionalGroupsSequence")
    if not frames or int(ds.get("NumberOfFrames", 1) or 1) < 2:
        return None
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    found = []
    for item in frames:
        position = _first(item, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _first(item, "PlaneOrientationSequence", "ImageOrientationPatient")
        if orientation is None and shared is not None:
            orientation = _first(shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        if position is None:
            return None
        frame = pydicom.Dataset()
        frame.ImagePositionPatient = position
        if orientation is not None:
            frame.ImageOrientationPatient = orientation
        found.append(_z_position(frame))
    return found


def _orientation(ds: pydicom.Dataset) -> str:
    """ImageOrientationPatient (a multi-frame file's shared one) to 2
    decimals, as text: slices of one series compare equal on it."""
    orientation = ds.get("ImageOrientationPatient")
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    if orientation is None and shared is not None:
        orientation = _first(shared, "PlaneOrientationSequence", "ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        return ""
    return ",".join(f"{round(float(v), 2) + 0.0:g}" for v in orientation)  # + 0.0: no "-0"


def _first(item: pydicom.Dataset, sequence: str, keyword: str):
    """item.<sequence>[0].<keyword>, or None where a level is missing."""
    inner = item.get(sequence)
    return inner[0].get(keyword) if inner else None


def read_header(path: str | Path) -> dict[str, Any]:
    """The tags the kit needs, without decoding (or reading) the pixels.
    Raises DicomReadError when the header itself cannot be parsed."""
    with lenient_uids():
        return _header_fields(path, _read(path, defer_size=_DEFER_BYTES))


def _header_fields(path: str | Path, ds: pydicom.Dataset) -> dict[str, Any]:
    try:
        return {
            "patient_id": str(ds.get("PatientID", "")),
            "study_id": str(ds.get("StudyInstanceUID", "")),
            "series_id": str(ds.get("SeriesInstanceUID", "")),
            "sop_id": str(ds.get("SOPInstanceUID", "")),
            "modality": str(ds.get("Modality", "")),
            "orientation": _orientation(ds),
            "z": _z_position(ds),
            "frames": int(ds.get("NumberOfFrames", 1) or 1),
            "frame_z": _frame_positions(ds),
            "rows": int(ds.get("Rows", 0)),
            "cols": int(ds.get("Columns", 0)),
            "pixel_problem": pixel_problem(ds, os.path.getsize(path)),
        }
    except Exception as exc:  # a tag with a value that does not parse
        raise DicomReadError(path, f"bad header value ({type(exc).__name__}: {exc})") from None


def _decode(
    ds: pydicom.Dataset, path: str | Path, colour: bool = False, frame: int | None = None
) -> np.ndarray:
    """One frame: (rows, cols) grayscale, or (rows, cols, 3) RGB when `colour`
    (pydicom converts YBR_FULL and YBR_FULL_422 to RGB); `frame`: that frame
    of a multi-frame file, decoded alone."""
    problem = pixel_problem(ds, os.path.getsize(path))
    if problem:
        raise DicomReadError(path, problem)
    if frame is not None:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if not 0 <= frame < frames:
            raise DicomReadError(path, f"has {frames} frame(s); frame {frame} was asked for")
        ds.pixel_array_options(index=frame)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # the decoders raise many types for bad data
        raise DicomReadError(path, f"corrupt pixel data ({type(exc).__name__}: {exc})") from None
    samples = int(ds.get("SamplesPerPixel", 1))
    if colour and samples == 3 and pixels.ndim == 3 and pixels.shape[-1] == 3:
        return pixels
    if pixels.ndim != 2 or samples != 1:
        wanted = "one grayscale or RGB frame" if colour else "one grayscale frame"
        raise DicomReadError(
            path,
            f"expected {wanted}. Received pixel array of shape {pixels.shape} "
            f"({samples} samples per pixel, {ds.get('PhotometricInterpretation', '?')})",
        )
    return pixels


def needs_12bit_fix(bits_stored: int, pixel_representation: int, intercept: float | None) -> bool:
    """The competition's known bad headers: 12-bit unsigned data whose
    intercept says the values are already near HU, while they wrap."""
    return (
        intercept is not None
        and bits_stored == 12
        and pixel_representation == 0
        and intercept > -100
    )


@dataclass(frozen=True)
class Rescale:
    """What turns one file's stored values into HU (hashable: window lookup
    tables are cached by it)."""

    slope: float
    intercept: float
    has_rescale: bool
    bits_stored: int
    signed: int
    monochrome1: bool

    @classmethod
    def of(cls, ds: pydicom.Dataset) -> Rescale:
        has_rescale = ds.get("RescaleIntercept") is not None
        return cls(
            slope=float(ds.get("RescaleSlope", 1) or 1),
            intercept=float(ds.RescaleIntercept) if has_rescale else 0.0,
            has_rescale=has_rescale,
            bits_stored=int(ds.get("BitsStored", 16)),
            signed=int(ds.get("PixelRepresentation", 0)),
            monochrome1=ds.get("PhotometricInterpretation") == "MONOCHROME1",
        )

    @property
    def per_value(self) -> bool:
        """True when HU depend on the stored value alone (not on the image)."""
        return not (self.monochrome1 and not self.has_rescale)

    def to_hu(self, pixels: np.ndarray) -> np.ndarray:
        raw = pixels.astype(np.int32)
        intercept = self.intercept
        if needs_12bit_fix(self.bits_stored, self.signed, intercept if self.has_rescale else None):
            raw += 1000
            raw[raw >= 4096] -= 4096
            intercept = -1000.0
        if not self.per_value:
            # Without a rescale the values are not HU: flip them so that higher
            # means denser, as in MONOCHROME2. With one, the rescale defines HU
            # and MONOCHROME1 only inverts the display, so HU are left as they are.
            raw = raw.max() + raw.min() - raw
        hu = raw.astype(np.float32)
        if self.slope != 1:
            hu *= np.float32(self.slope)
        hu += np.float32(intercept)
        return hu


def read_pixels(path: str | Path, frame: int | None = None) -> tuple[np.ndarray, Rescale]:
    """The stored samples and how to turn them into HU: the fast reader for
    the common case, pydicom for everything else (and every error); `frame`:
    one frame of a multi-frame file."""
    fast = read_fast(path) if frame is None else None
    if fast is not None:
        pixels, fields = fast
        return pixels, Rescale(**fields)
    with lenient_uids():
        ds = _read(path)
        return _decode(ds, path, frame=frame), Rescale.of(ds)


def load_hu(path: str | Path) -> np.ndarray:
    """The image in Hounsfield units, float32 (rows, cols), at its true size."""
    pixels, rescale = read_pixels(path)
    return rescale.to_hu(pixels)


# --- display values: the modality and VOI LUTs of the header -----------------------


def read_dataset(path: str | Path) -> pydicom.Dataset:
    """The whole file, parsed (DicomReadError when it cannot be)."""
    with lenient_uids():
        return _read(path)


def _voi_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """The output range of the header's VOI transform (DICOM PS3.3 C.11.2, as
    pydicom computes it): an explicit LUT's bit depth, else the stored bits
    after the rescale."""
    if ds.get("VOILUTSequence"):
        return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", 16))
    if ds.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def has_voi(ds: pydicom.Dataset) -> bool:
    return bool(ds.get("VOILUTSequence")) or "WindowCenter" in ds


def _to_display(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Modality LUT + VOI LUT (window LINEAR / LINEAR_EXACT / SIGMOID, or an
    explicit LUT) -> 0..255 float, higher = brighter on a MONOCHROME2 screen."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    out = apply_voi_lut(apply_modality_lut(values, ds), ds)
    low, high = _voi_range(ds)
    out = (np.asarray(out, np.float64) - low) * (255.0 / max(high - low, 1e-9))
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        out = 255.0 - out
    return out


def display_table(ds: pydicom.Dataset, dtype: np.dtype) -> np.ndarray:
    """Every 16-bit stored value (of `dtype`) -> its display value, uint8 (65536,)."""
    codes = np.arange(65536, dtype=np.uint16).view(dtype)
    return np.clip(np.rint(_to_display(codes, ds)), 0, 255).astype(np.uint8)


def _stretch(pixels: np.ndarray, monochrome1: bool) -> np.ndarray:
    """No VOI in the header: the image's own range -> 0..255."""
    low, high = float(pixels.min()), float(pixels.max())
    out = (pixels.astype(np.float32) - low) * np.float32(255.0 / max(high - low, 1e-9))
    out = np.rint(out).astype(np.uint8)
    return 255 - out if monochrome1 else out


def load_display(path: str | Path, frame: int | None = None) -> np.ndarray:
    """A grayscale DICOM as it is meant to be shown: uint8 (rows, cols) by the
    header's modality and VOI LUTs (the first window of several), MONOCHROME1
    inverted; without VOI information, the image's own range."""
    ds = read_dataset(path)
    pixels = _decode(ds, path, frame=frame)
    if not has_voi(ds):
        return _stretch(pixels, ds.get("PhotometricInterpretation") == "MONOCHROME1")
    if pixels.dtype.itemsize == 2:
        return np.take(display_table(ds, pixels.dtype), pixels.view(np.uint16))
    return np.clip(np.rint(_to_display(pixels, ds)), 0, 255).astype(np.uint8)


def load_rgb(path: str | Path, frame: int | None = None) -> np.ndarray:
    """A DICOM as colour: uint8 (rows, cols, 3) RGB for RGB and YBR files; a
    grayscale one as its display values, (rows, cols, 1)."""
    ds = read_dataset(path)
    pixels = _decode(ds, path, colour=True, frame=frame)
    if pixels.ndim == 2:
        return load_display(path, frame)[..., None]
    if pixels.dtype != np.uint8:  # more than 8 bits per sample
        bits = int(ds.get("BitsStored", 8))
        pixels = np.clip(pixels.astype(np.float32) * (255.0 / (2**bits - 1)), 0, 255)
        pixels = np.rint(pixels).astype(np.uint8)
    return np.ascontiguousarray(pixels)
