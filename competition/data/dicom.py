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

from competition.errors import KitError
from competition.data.rawdicom import read_fast
from competition.data.windows import DEFAULT_WINDOWS, window, window_stack

PIXEL_DATA = 0x7FE00010
# Values (not the pixel data) larger than this are not read by read_header.
_DEFER_BYTES = 1024
# Bumped whenever load_hu's output could change: caches are keyed by it.
READER_VERSION = 1
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


class DicomReadError(KitError):
    """A DICOM file that cannot be turned into an image."""

    def __init__(self, path: str | Path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{path}: {cause}")


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


def first_value(value: Any) -> float:
    """WindowCenter/WindowWidth may be multi-valued: take the first."""
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        value = value[0]
    return float(value)


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
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    expected = (
        rows * cols * int(ds.get("SamplesPerPixel", 1)) * int(ds.get("BitsAllocated", 16)) // 8
    )
    if length < expected or (tell is not None and tell + length > file_size):
        available = min(length, file_size - tell) if tell is not None else length
        return f"truncated pixel data ({available} of {expected} bytes)"
    return None


def _z_position(ds: pydicom.Dataset) -> float:
    position = ds.get("ImagePositionPatient")
    if position is not None and len(position) == 3:
        return float(position[2])
    location = ds.get("SliceLocation")
    return float(location) if location is not None else float("nan")


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
            "z": _z_position(ds),
            "rows": int(ds.get("Rows", 0)),
            "cols": int(ds.get("Columns", 0)),
            "pixel_problem": pixel_problem(ds, os.path.getsize(path)),
        }
    except Exception as exc:  # a tag with a value that does not parse
        raise DicomReadError(path, f"bad header value ({type(exc).__name__}: {exc})") from None


def _decode(ds: pydicom.Dataset, path: str | Path) -> np.ndarray:
    problem = pixel_problem(ds, os.path.getsize(path))
    if problem:
        raise DicomReadError(path, problem)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # the decoders raise many types for bad data
        raise DicomReadError(path, f"corrupt pixel data ({type(exc).__name__}: {exc})") from None
    if pixels.ndim != 2:
        raise DicomReadError(
            path, f"expected one grayscale frame. Received pixel array of shape {pixels.shape}"
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


def read_pixels(path: str | Path) -> tuple[np.ndarray, Rescale]:
    """The stored samples and how to turn them into HU: the fast reader for
    the common case, pydicom for everything else (and every error)."""
    fast = read_fast(path)
    if fast is not None:
        pixels, fields = fast
        return pixels, Rescale(**fields)
    with lenient_uids():
        ds = _read(path)
        return _decode(ds, path), Rescale.of(ds)


def load_hu(path: str | Path) -> np.ndarray:
    """The image in Hounsfield units, float32 (rows, cols), at its true size."""
    pixels, rescale = read_pixels(path)
    return rescale.to_hu(pixels)

