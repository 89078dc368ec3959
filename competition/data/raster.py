"""PNG and JPEG images: headers without decoding, and pixels as uint8; from
their files or as bytes inside an HDF5 file (competition.data.hdf5).

The same contract as the DICOM reader: a file that cannot be turned into an
image raises ImageReadError naming the file and the cause, and is left out;
it is never returned half-decoded. OpenCV decodes a truncated JPEG into an
image with a grey bottom and only a warning, so a JPEG must end with its EOI
marker and a PNG with its IEND chunk before it is decoded.

Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (the DCT
scaling of IMREAD_REDUCED_*) when the reduced image is still at least as
large as what the model takes. Measured for a 256 px model input, decode and
resize: 1600 x 1200, 32.8 -> 9.0 ms; 4000 x 3000, 173.8 -> 28.7 ms; the
pixels differ from decoding whole and shrinking (INTER_AREA) by under 2
levels on average (tested).
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from competition.data import hdf5
from competition.errors import ImageReadError

JPEG_SUFFIXES = {".jpg", ".jpeg"}
PNG_SUFFIXES = {".png"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_REDUCED = {
    (True, 2): cv2.IMREAD_REDUCED_COLOR_2,
    (True, 4): cv2.IMREAD_REDUCED_COLOR_4,
    (True, 8): cv2.IMREAD_REDUCED_COLOR_8,
    (False, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (False, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (False, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def _read_bytes(path: Path) -> bytes:
    member = hdf5.member_of(path)
    if member is not None:
        return hdf5.read_bytes(*member)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "a folder, not an image file") from None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(rows, cols) from the JPEG's frame header (SOFn), without decoding."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            rows, cols = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return rows, cols
        pos += 2 + length
    return None


def _suffix(path: Path, data: bytes) -> str:
    """The file's type by its ending, or by its first bytes inside an HDF5
    file (whose keys have no ending)."""
    if hdf5.member_of(path) is None:
        return path.suffix.lower()
    if data[:2] == b"\xff\xd8":
        return ".jpg"
    return ".png" if data[:8] == _PNG_SIGNATURE else ""


def _problem(data: bytes, suffix: str) -> str | None:
    """Why the bytes cannot be a whole image of their type, or None."""
    if not data:
        return "empty file"
    if not suffix:
        return "neither JPEG nor PNG bytes"
    if suffix in JPEG_SUFFIXES:
        if data[:2] != b"\xff\xd8":
            return "not a JPEG file (no start-of-image marker)"
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return "truncated JPEG (no end-of-image marker)"
        if _jpeg_size(data) is None:
            return "not a JPEG file (no frame header)"
        return None
    if data[:8] != _PNG_SIGNATURE:
        return "not a PNG file (no PNG signature)"
    if not data.endswith(_IEND):
        return "truncated PNG (no IEND chunk)"
    return None


def header(path: str | Path) -> dict:
    """rows, cols and `pixel_problem` (None, or why the pixels cannot be read)."""
    path = Path(path)
    data = _read_bytes(path)
    suffix = _suffix(path, data)
    problem = _problem(data, suffix)
    rows = cols = 0
    if problem is None and suffix in JPEG_SUFFIXES:
        rows, cols = _jpeg_size(data)
    elif problem is None:
        cols, rows = struct.unpack(">II", data[16:24])  # IHDR comes first
    return {"rows": rows, "cols": cols, "pixel_problem": problem}


def _reduction(data: bytes, suffix: str, at_least: tuple[int, int] | None) -> int:
    """The largest libjpeg scale-down (1, 2, 4, 8) that keeps both sides >= `at_least`."""
    if at_least is None or suffix not in JPEG_SUFFIXES:
        return 1
    rows, cols = _jpeg_size(data)
    factor = 1
    for candidate in (2, 4, 8):
        if rows // candidate >= at_least[0] and cols // candidate >= at_least[1]:
            factor = candidate
    return factor


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:  # 16-bit PNG: 65535 -> 255
        return cv2.convertScaleAbs(image, alpha=1 / 257.0)
    raise ValueError(f"unsupported sample type {image.dtype}")


def read(path: str | Path, colour: bool, at_least: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (rows, cols, 3) RGB when `colour`, else (rows, cols, 1) gray.
    8- and 16-bit PNGs, with or without alpha; `at_least`: see the module."""
    path = Path(path)
    data = _read_bytes(path)
    suffix = _suffix(path, data)
    problem = _problem(data, suffix)
    if problem:
        raise ImageReadError(path, problem)
    factor = _reduction(data, suffix, at_least)
    buffer = np.frombuffer(data, dtype=np.uint8)
    if factor > 1:
        image = cv2.imdecode(buffer, _REDUCED[colour, factor])
    else:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(path, f"corrupt {suffix.lstrip('.').upper()} data (OpenCV cannot decode it)")
    try:
        image = _to_uint8(image)
    except ValueError as exc:
        raise ImageReadError(path, str(exc)) from None
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]  # alpha dropped
    if colour:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return image
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image[..., None]
