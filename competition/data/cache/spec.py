"""Where a split's cache is, and for which settings: `CacheSpec` (the
images' layout, the pixel settings, the cache folder, the codec asked for),
the key its folder is named by, which codec a split's cache was built
with, and whether it is finished for the current settings.

`<data.root>/<data.cache_dir>/<rows>x<cols>-<channels>ch-<key>/<split>/`.
The key covers everything that changes the stored bytes: windows, size, the
reader's version and pixel fixes, the codec. Other settings get another folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from competition.data.cache.store import open_store
from competition.data.dicom import PIXEL_FIXES, READER_VERSION
from competition.data.pixelspec import PixelSpec
from competition.data.settings import DataConfig
from competition.errors import KitError
from competition.layout import Layout

FORMAT_VERSION = 1
TODO, DONE, UNREADABLE = 0, 1, 2  # a row's state (state.npy)
AUTO_ORDER = ("raw", "zstd", "jpeg", "png")  # a finished cache of any of these serves `auto`
MADE_FROM = "source.json"  # the image folder and the settings a split's cache was made from


class CacheError(KitError, ValueError):
    """A cache that is missing, unfinished, damaged, not for these settings, or too big."""


@dataclass(frozen=True)
class CacheSpec:
    layout: Layout
    pixels: PixelSpec
    folder: Path  # data.root / data.cache_dir
    codec: str  # data.cache_codec: auto or one codec
    quality: int  # JPEG quality

    @classmethod
    def of(cls, layout: Layout, pixels: PixelSpec, data: DataConfig) -> CacheSpec:
        return cls(
            layout, pixels, layout.root / data.cache_dir, data.cache_codec, data.cache_quality
        )

    def made_from(self, codec: str = "raw") -> dict:
        """Everything that changes the stored bytes."""
        spec = self.pixels
        settings = {
            "image_format": spec.image_format,
            "mode": spec.mode,
            "shape": list(spec.shape),
            "keep_aspect": spec.keep_aspect,
            "crop": spec.crop,
            "channels": spec.input_shape[2],
            "reader_version": READER_VERSION,
            "pixel_fixes": list(PIXEL_FIXES),
            "format_version": FORMAT_VERSION,
        }
        if spec.mode == "ct_windows":
            settings["windows"] = [list(w) for w in spec.windows]
        if codec != "raw":  # raw caches keep the key they had before codecs existed
            settings["codec"] = codec
            if codec == "jpeg":
                settings["quality"] = self.quality
        return settings

    def root(self, codec: str = "raw") -> Path:
        """<cache folder>/<rows>x<cols>-<channels>ch-<key>/"""
        settings = self.made_from(codec)
        key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        rows, cols = settings["shape"]
        return self.folder / f"{rows}x{cols}-{settings['channels']}ch-{key}"

    def candidate_codecs(self) -> tuple[str, ...]:
        return AUTO_ORDER if self.codec == "auto" else (self.codec,)

    def existing_codec(self, split: str) -> str | None:
        """The codec of this split's finished cache for these settings, else of
        an unfinished one (a build goes on with it), else None."""
        for finished in (True, False):
            for codec in self.candidate_codecs():
                folder = self.root(codec) / split
                if (folder / "complete.json").is_file() if finished else folder.is_dir():
                    return codec
        return None

    def split_folder(self, split: str, codec: str | None = None) -> Path:
        """The cache folder of a split: of `codec`, or of the cache there is."""
        default = self.codec if self.codec != "auto" else "raw"
        return self.root(codec or self.existing_codec(split) or default) / split

    def made_from_record(self, split: str, codec: str) -> dict:
        """What a split's cache records it was made from (its source.json)."""
        images = self.layout.image_dir(split)
        return {"images": str(images.resolve()), "settings": self.made_from(codec)}

    def is_complete(self, split: str) -> bool:
        """A finished cache of this split's folder with these settings."""
        codec = self.existing_codec(split)
        if codec is None:
            return False
        folder = self.root(codec) / split
        if not (folder / "complete.json").is_file():
            return False
        recorded = json.loads((folder / MADE_FROM).read_text())
        return recorded == self.made_from_record(split, codec)


def store_of(folder: Path):
    """The store of a cache folder, as its record of what made it says."""
    settings = json.loads((Path(folder) / MADE_FROM).read_text())["settings"]
    shape = (*settings["shape"], settings["channels"])
    return open_store(folder, shape, settings.get("codec", "raw"), settings.get("quality", 0))


def read_unreadable(folder: Path) -> dict[str, str]:
    """ID -> reason; a line cut short by a kill is ignored (its row is redone)."""
    found = {}
    path = Path(folder) / "unreadable.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            found[entry["image_id"]] = entry["reason"]
    return found
