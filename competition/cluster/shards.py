"""The test set cut into shards for the cluster's predictors: which images
each shard holds, and its predictions on disk (one .npz per shard, written
atomically, skipped on a re-run when it holds the same images predicted the
same way)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from competition.config import Config
from competition.fileio import atomic_path


def cut(image_ids: list[str], shards: int) -> list[list[str]]:
    """Contiguous, near-equal shards in the test order (none empty)."""
    shards = max(1, min(shards, len(image_ids)))
    return [part.tolist() for part in np.array_split(np.asarray(image_ids, dtype=object), shards)]


def signature(config: Config, folds: list[int], image_ids: list[str]) -> str:
    """What decides a shard's predictions: the folds, the views, the ensemble, the images."""
    digest = hashlib.blake2b(digest_size=12)
    predict = config.predict
    digest.update(json.dumps([config.experiment, folds, predict.tta, predict.ensemble]).encode())
    digest.update("\n".join(image_ids).encode())
    return digest.hexdigest()


def shard_path(config: Config, index: int, total: int) -> Path:
    return config.runs.root / "test_shards" / f"shard-{index:04d}-of-{total:04d}.npz"


def write_shard(path: Path, image_ids, combined, unreadable: dict, sig: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            image_ids=np.asarray(image_ids, dtype=str),
            combined=np.asarray(combined, dtype=np.float64),
            unreadable=np.asarray(json.dumps(unreadable)),
            signature=np.asarray(sig),
        )


def read_shard(path: Path, sig: str | None = None):
    """(image_ids, combined, unreadable), or None when the shard is missing
    or was made another way (other folds, views or images)."""
    if not path.is_file():
        return None
    with np.load(path) as found:
        if sig is not None and str(found["signature"]) != sig:
            return None
        return (
            found["image_ids"].tolist(),
            found["combined"],
            json.loads(str(found["unreadable"])),
        )
