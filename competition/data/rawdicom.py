"""A fast reader for the common case: an uncompressed, little-endian,
single-frame, 16-bit grayscale DICOM file with a flat header, which is what
the RSNA competition ships. It walks the header with `struct` to the few tags
the pixels need and takes the samples straight from the bytes, about 4x
faster than pydicom's full parse plus `pixel_array`.

Anything else (another transfer syntax, a sequence of undefined length, a
multi-valued rescale, a truncated file, sign extension to do) returns None,
and `competition.dicom` reads the file with pydicom instead. Tests check that
both readers agree wherever this one answers.
"""

from __future__ import annotations

import struct

import numpy as np

EXPLICIT_LE = b"1.2.840.10008.1.2.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
# VRs whose explicit length is 4 bytes after 2 reserved ones.
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV"}
_PIXEL_DATA = (0x7FE0, 0x0010)
_UNDEFINED = 0xFFFFFFFF
_US = {  # tag -> name, unsigned short values
    (0x0028, 0x0002): "samples",
    (0x0028, 0x0010): "rows",
    (0x0028, 0x0011): "cols",
    (0x0028, 0x0100): "bits_allocated",
    (0x0028, 0x0101): "bits_stored",
    (0x0028, 0x0103): "signed",
}
_TEXT = {  # tag -> name, string values
    (0x0028, 0x0004): "photometric",
    (0x0028, 0x0008): "frames",
    (0x0028, 0x1052): "intercept",
    (0x0028, 0x1053): "slope",
}


class _Unsupported(Exception):
    """Not the common case: let pydicom read the file."""


def _elements(data: bytes, pos: int, explicit: bool):
    """(tag, value offset, value length) of each top-level element from `pos`."""
    unpack = struct.unpack_from
    end = len(data)
    while pos + 8 <= end:
        if explicit:
            group, element, vr, length = unpack("<HH2sH", data, pos)
            pos += 8
            if vr in _LONG_VRS:  # 2 reserved bytes, then a 4-byte length
                (length,) = unpack("<I", data, pos)
                pos += 4
        else:
            group, element, length = unpack("<HHI", data, pos)
            pos += 8
        if length == _UNDEFINED:
            raise _Unsupported
        yield (group, element), pos, length
        pos += length


def _transfer_syntax(data: bytes) -> tuple[bytes, int]:
    """(syntax UID, offset of the dataset) from the file meta group."""
    if data[128:132] != b"DICM":
        raise _Unsupported
    syntax, pos = None, 132
    for tag, offset, length in _elements(data, 132, explicit=True):
        if tag[0] != 0x0002:
            break
        if tag == (0x0002, 0x0010):
            syntax = data[offset : offset + length].rstrip(b"\0 ")
        pos = offset + length
    if syntax not in (EXPLICIT_LE, IMPLICIT_LE):
        raise _Unsupported
    return syntax, pos


def _header(data: bytes) -> tuple[dict, int, int]:
    """(the tags the pixels need, pixel data offset, pixel data length)."""
    syntax, pos = _transfer_syntax(data)
    found: dict = {}
    for tag, offset, length in _elements(data, pos, explicit=syntax == EXPLICIT_LE):
        if tag == _PIXEL_DATA:
            return found, offset, length
        if tag in _US and length == 2:
            found[_US[tag]] = struct.unpack_from("<H", data, offset)[0]
        elif tag in _TEXT:
            found[_TEXT[tag]] = data[offset : offset + length].decode("ascii").strip("\0 ")
    raise _Unsupported


def _number(text: str | None, default: float | None) -> float | None:
    """A DS/IS value; empty or multi-valued ones are left to pydicom."""
    if text is None:
        return default
    if text == "" or "\\" in text:
        raise _Unsupported
    return float(text)


def read_fast(path) -> tuple[np.ndarray, dict] | None:
    """(stored samples (rows, cols), rescale fields) or None: see the module."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        tags, offset, length = _header(data)
        rows, cols = tags["rows"], tags["cols"]
        if (
            tags.get("bits_allocated") != 16
            or tags.get("samples", 1) != 1
            or int(_number(tags.get("frames"), 1)) != 1
            or (tags.get("signed", 0) and tags.get("bits_stored", 16) != 16)
            or length < rows * cols * 2
            or offset + rows * cols * 2 > len(data)
        ):
            raise _Unsupported
        signed = tags.get("signed", 0)
        pixels = np.frombuffer(
            data, dtype="<i2" if signed else "<u2", count=rows * cols, offset=offset
        ).reshape(rows, cols)
        bits = tags.get("bits_stored", 16)
        if not signed and bits < 16 and pixels.max() >> bits:
            pixels = pixels & np.uint16(
                (1 << bits) - 1
            )  # as pixel_array: bits above BitsStored dropped
        intercept = _number(tags.get("intercept"), None)
        fields = {
            "slope": _number(tags.get("slope"), 1.0) or 1.0,
            "intercept": 0.0 if intercept is None else intercept,
            "has_rescale": intercept is not None,
            "bits_stored": bits,
            "signed": signed,
            "monochrome1": tags.get("photometric") == "MONOCHROME1",
        }
        return pixels, fields
    except (_Unsupported, KeyError, ValueError, UnicodeDecodeError, struct.error, OSError):
        return None
