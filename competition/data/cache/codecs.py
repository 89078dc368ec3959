"""How a cached image is stored: the codecs of `data.cache_codec`.

Measured by `make bench-scale` on 256 x 256 x 3 windowed head CT slices (one
core; the README has the table): `zstd` (lossless, Zstandard over the
interleaved bytes, through pyarrow which the kit already needs) is the
smallest lossless codec and decodes several times faster than PNG; `png` is
there for comparison and for tools that want image files; `jpeg` (lossy) is a
third of zstd's size, at a cost in the validation score the bench reports.
`raw` stores nothing encoded: the memory-mapped array of `cache.py`.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa

from competition.errors import KitError

ZSTD_LEVEL = 5  # levels 5-6: -15% size against level 1 at the same decode speed
PNG_LEVEL = 3  # OpenCV's default: 45 KiB at 650 decodes/s; level 9 saves 4% at 1/3 the encode speed


class CodecError(KitError, ValueError):
    """An entry that does not decode to the image it was stored as."""


def _planes(image: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (C*H, W) grey: image codecs take 1, 3 or 4 channels only."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)).reshape(-1, image.shape[1])


def _from_planes(plane: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    rows, cols, channels = shape
    return np.ascontiguousarray(plane.reshape(channels, rows, cols).transpose(1, 2, 0))


class Zstd:
    name, lossless = "zstd", True

    def __init__(self, quality: int = 0):
        self._codec = pa.Codec("zstd", compression_level=ZSTD_LEVEL)

    def encode(self, image: np.ndarray) -> bytes:
        return self._codec.compress(np.ascontiguousarray(image).tobytes(), asbytes=True)

    def decode(self, data, shape: tuple[int, int, int]) -> np.ndarray:
        size = int(np.prod(shape))
        raw = self._codec.decompress(data, decompressed_size=size, asbytes=True)
        return np.frombuffer(raw, np.uint8).reshape(shape)


class _OpenCV:
    """PNG and JPEG through OpenCV: 1 or 3 channels as they are (3 channels
    as one colour image), other counts as planes stacked in one grey image."""

    extension, lossless = "", True

    def __init__(self, quality: int = 0):
        self.quality = quality

    def params(self) -> list[int]:
        raise NotImplementedError

    def encode(self, image: np.ndarray) -> bytes:
        flat = image if image.shape[2] in (1, 3) else _planes(image)
        ok, data = cv2.imencode(self.extension, flat, self.params())
        if not ok:
            raise CodecError(f"OpenCV could not encode a {image.shape} image as {self.name}")
        return data.tobytes()

    def decode(self, data, shape: tuple[int, int, int]) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise CodecError(f"not a {self.name} image")
        if shape[2] in (1, 3):
            return image.reshape(shape)
        return _from_planes(image, shape)


class Png(_OpenCV):
    name, extension = "png", ".png"

    def params(self) -> list[int]:
        return [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]


class Jpeg(_OpenCV):
    name, extension, lossless = "jpeg", ".jpg", False

    def params(self) -> list[int]:
        return [cv2.IMWRITE_JPEG_QUALITY, self.quality]


CODECS = {codec.name: codec for codec in (Zstd, Png, Jpeg)}
STORED = ("raw", *CODECS)  # what a cache can be built with; `auto` picks one


def make_codec(name: str, quality: int = 90):
    return CODECS[name](quality)
