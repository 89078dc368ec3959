"""The data stage's settings sections: where the competition is and how its
images are read and cached (`data:`), and how folds are cut (`folds:`).
Every key is documented in configs/base.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from competition.knobs import knob

READ_FROM = ("auto", "cache", "files")  # data.source
CACHE_CODECS = ("auto", "raw", "zstd", "png", "jpeg")


@dataclass(frozen=True)
class DataConfig:
    root: str = "data/competition"
    workers: int = knob(0, ge=0)
    source: Literal[READ_FROM] = "auto"
    cache_dir: str = "cache"
    build_cache: bool = False
    cache_codec: Literal[CACHE_CODECS] = "auto"
    cache_quality: int = knob(90, ge=1, le=100)


@dataclass(frozen=True)
class FoldsConfig:
    k: int = knob(5, ge=2)
    seed: int = 42
