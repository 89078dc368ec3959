"""Images kept as encoded bytes in one HDF5 file, keyed by image ID (ISIC
2024's `train-image.hdf5`: one scalar dataset of JPEG bytes per `isic_id`).

An image in such a file has the path `<file>.hdf5/<key>` everywhere in the
kit (the index, the cache, the kernel), as if the file were a folder: the
readers ask `member_of(path)` and take the bytes from the file instead of
the disk. Each process keeps its own open handle per file (an HDF5 handle
must not cross a fork), opened read-only on first use."""

from __future__ import annotations

import os
from pathlib import Path

from competition.errors import ImageReadError

SUFFIXES = {".hdf5", ".h5"}
_HANDLES: dict[tuple[int, str], object] = {}


def is_hdf5(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def member_of(path: str | Path) -> tuple[Path, str] | None:
    """(the HDF5 file, the key) when `path` is an image inside one, else None."""
    path = Path(path)
    return (path.parent, path.name) if is_hdf5(path.parent) else None


def _handle(file: Path):
    import h5py

    key = (os.getpid(), str(file))
    if key not in _HANDLES:
        try:
            _HANDLES[key] = h5py.File(file, "r")
        except FileNotFoundError:
            raise ImageReadError(file, "HDF5 file not found") from None
        except OSError as exc:
            raise ImageReadError(file, f"not a readable HDF5 file ({exc})") from None
    return _HANDLES[key]


def read_bytes(file: Path, key: str) -> bytes:
    """The encoded image stored under `key` (ImageReadError naming the file
    and the key when it is missing or holds no bytes)."""
    handle = _handle(file)
    where = f"{file}[{key!r}]"
    if key not in handle:
        raise ImageReadError(where, f"no image under this key in {file.name}")
    value = handle[key][()]
    if hasattr(value, "tobytes"):  # an array of uint8 rather than a bytes scalar
        value = value.tobytes()
    if not isinstance(value, bytes):
        raise ImageReadError(where, f"holds {type(value).__name__}, not encoded image bytes")
    return value


def keys(file: Path) -> list[str]:
    """Every image key of the file, sorted."""
    return sorted(_handle(file).keys())
