"""Which codec a new cache is built with, and whether it fits, decided
before the first image is written.

The projected size is exact for `raw` (rows x H x W x C bytes) and measured
for the encoded codecs by encoding a sample of the split's own images (plus
a margin, as the sample is small). `auto` takes the fastest codec that needs
at most AUTO_SHARE of the free space (checkpoints, predictions and the other
split need room too): `raw`, else `zstd` (lossless), else `jpeg`; an explicit
codec is refused only when it cannot fit at all.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition.data.cache.codecs import make_codec
from competition.data.cache.spec import CacheError, CacheSpec
from competition.data.preprocess import load_entry
from competition.errors import ImageReadError

AUTO_SHARE = 0.8
SAMPLE = 48  # images encoded to project an encoded codec's size
MARGIN = 1.15  # on a sampled projection
AUTO_CHOICES = ("raw", "zstd", "jpeg")


@dataclass(frozen=True)
class Plan:
    codec: str
    projected_bytes: int
    free_bytes: int
    reason: str


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds `path` (or would: its first existing parent)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def sample_images(spec: CacheSpec, paths: list[str], count: int = SAMPLE) -> list[np.ndarray]:
    """Up to `count` decoded images spread over the split (unreadable ones skipped)."""
    root = spec.layout.root
    picks = np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).astype(int))
    images = []
    for i in picks:
        try:
            images.append(load_entry(root, paths[i], spec.pixels))
        except ImageReadError:
            continue
    return images


def bytes_per_image(spec: CacheSpec, codec: str, sample: list[np.ndarray]) -> float:
    """Raw: exact. Encoded: the sample's mean size with a margin."""
    if codec == "raw" or not sample:
        return float(np.prod(spec.pixels.input_shape))
    coder = make_codec(codec, spec.quality)
    return MARGIN * float(np.mean([len(coder.encode(image)) for image in sample]))


def _gib(size: float) -> str:
    return f"{size / 2**30:,.2f} GiB"


def plan_codec(spec: CacheSpec, split: str, ids: list[str], paths: list[str]) -> Plan:
    """The codec for a fresh cache of `split`, or a CacheError with the sizes."""
    where = spec.folder
    free = free_bytes(where)
    wanted = spec.codec
    choices = AUTO_CHOICES if wanted == "auto" else (wanted,)
    sample = sample_images(spec, paths) if choices != ("raw",) else []
    sizes = {codec: int(len(ids) * bytes_per_image(spec, codec, sample)) for codec in choices}
    for codec in choices:
        limit = free * AUTO_SHARE if wanted == "auto" else free
        if sizes[codec] <= limit:
            reason = _reason(wanted, codec, sizes, free, len(ids), len(sample))
            print(f"Cache of {split}: {reason}", flush=True)  # said before the build starts
            return Plan(codec, sizes[codec], free, reason)
    raise CacheError(
        f"The {split} cache of {len(ids):,} images will not fit at {where}: "
        + ", ".join(f"{codec} needs {_gib(size)}" for codec, size in sizes.items())
        + f"; {_gib(free)} free. Nothing was written. Free some space, set data.cache_dir "
        "to a bigger disk, choose a smaller data.cache_codec (zstd, jpeg) or "
        "preprocess.image_size, or train from the files (data.source=files)."
    )


def _reason(wanted: str, codec: str, sizes: dict, free: int, images: int, sampled: int) -> str:
    size = f"{codec}, {_gib(sizes[codec])} for {images:,} images"
    how = f" (projected from {sampled} sampled images)" if codec != "raw" else ""
    if wanted != "auto":
        return f"{size}{how}; {_gib(free)} free"
    before = AUTO_CHOICES[: AUTO_CHOICES.index(codec)]
    skipped = [f"{other} would need {_gib(sizes[other])}" for other in before]
    why = f"; {', '.join(skipped)}" if skipped else ""
    return f"auto chose {size}{how}; {_gib(free)} free{why}"
