"""Pretrained weights kept offline: `make weights BACKBONE=...` fetches them
on a machine with internet into a weights folder (`model.weights_dir`) with
their SHA-256 in checksums.json; training with `weights: imagenet` takes the
file from there when it is listed, checked first, so a Kaggle kernel or an
offline node never reaches the network.

  <weights_dir>/<KerasName>_notop.weights.h5   a keras.applications backbone
  <weights_dir>/hub-<name>/                    a KerasHub preset folder
  <weights_dir>/checksums.json                 file -> sha256
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from competition.errors import KitError
from competition.fileio import atomic_path, write_text_atomic
from competition.training.backbones import APPLICATIONS, HUB_PREFIX, canonical

CHECKSUMS = "checksums.json"


def weights_file(weights_dir: str | Path, backbone: str) -> Path:
    return Path(weights_dir).expanduser() / f"{canonical(backbone)}_notop.weights.h5"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(weights_dir: Path) -> dict[str, str]:
    file = weights_dir / CHECKSUMS
    if not file.is_file():
        return {}
    try:
        return dict(json.loads(file.read_text()))
    except (ValueError, TypeError) as exc:
        raise KitError(f"{file}: not a JSON object of file -> sha256 ({exc})") from None


def _fetch_command(backbone: str, weights_dir: Path) -> str:
    return f"make weights BACKBONE={backbone} WEIGHTS_DIR={weights_dir}"


def verify(weights_dir: Path, relative: str, backbone: str) -> Path:
    """The listed file, whose bytes match its checksum; else a KitError naming it."""
    path = weights_dir / relative
    expected = read_checksums(weights_dir).get(relative)
    if not path.exists():
        raise KitError(
            f"{path}: listed in {weights_dir / CHECKSUMS} but missing. Fetch it again on a "
            f"machine with internet: {_fetch_command(backbone, weights_dir)}"
        )
    got = _digest_of(path)
    if expected != got:
        raise KitError(
            f"{path}: corrupt or changed (sha256 {got[:16]}..., expected "
            f"{str(expected)[:16]}... from {weights_dir / CHECKSUMS}). Fetch it again: "
            f"{_fetch_command(backbone, weights_dir)}"
        )
    return path


def _digest_of(root: Path) -> str:
    """One file's sha256, or a folder's: the sha256 of its files' names and digests."""
    if not root.is_dir():
        return sha256(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    listing = "\n".join(f"{p.relative_to(root)} {sha256(p)}" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def local_weights(weights_dir: str | Path, backbone: str) -> str | None:
    """The checked local file for `weights: imagenet`, or None when the folder lists none."""
    folder = Path(weights_dir).expanduser()
    relative = weights_file(folder, backbone).name
    if relative not in read_checksums(folder):
        if (folder / relative).exists():
            raise KitError(
                f"{folder / relative} is not listed in {folder / CHECKSUMS}, so it cannot be "
                f"checked. Fetch it with: {_fetch_command(backbone, folder)}"
            )
        return None
    return str(verify(folder, relative, backbone))


def record(weights_dir: Path, relative: str) -> str:
    """Add a file (or preset folder) under weights_dir to checksums.json."""
    checksums = read_checksums(weights_dir)
    checksums[relative] = _digest_of(weights_dir / relative)
    write_text_atomic(weights_dir / CHECKSUMS, json.dumps(checksums, indent=2, sort_keys=True))
    return checksums[relative]


def store_application(model, weights_dir: Path, backbone: str) -> Path:
    """Save a built no-top application's weights under its name, with its checksum."""
    final = weights_file(weights_dir, backbone)
    with atomic_path(final, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    record(weights_dir, final.name)
    return final


def fetch(backbone: str, weights_dir: str | Path) -> Path:
    """Download the ImageNet (or preset) weights of `backbone` into weights_dir."""
    folder = Path(weights_dir).expanduser()
    if backbone.startswith(HUB_PREFIX):
        return _fetch_preset(backbone[len(HUB_PREFIX) :], folder)
    name = canonical(backbone)
    if name not in APPLICATIONS:
        raise KitError(
            f"BACKBONE={backbone}: no ImageNet weights to fetch (a keras.applications name, "
            "e.g. EfficientNetB3, or hub:<KerasHub preset handle>)"
        )
    import keras

    try:
        model = getattr(keras.applications, name)(include_top=False, weights="imagenet")
    except Exception as exc:
        raise KitError(
            f"The ImageNet weights of {name} could not be downloaded ({type(exc).__name__}: "
            f"{exc}). Run this on a machine with internet."
        ) from None
    return store_application(model, folder, name)


def _fetch_preset(handle: str, folder: Path) -> Path:
    """A KerasHub preset (e.g. kaggle://keras/resnetv2/keras/resnet_50_imagenet) copied whole."""
    from keras_hub.src.utils.preset_utils import get_file

    relative = "hub-" + handle.rstrip("/").split("/")[-1]
    final = folder / relative
    scratch = folder / f".{relative}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        for name in ("config.json", "metadata.json", "model.weights.h5", "image_converter.json"):
            try:
                shutil.copy(get_file(handle, name), scratch / name)
            except FileNotFoundError:
                if name in ("config.json", "model.weights.h5"):
                    raise
    except Exception as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise KitError(
            f"The KerasHub preset {handle} could not be fetched ({type(exc).__name__}: {exc}). "
            "Run this on a machine with internet (kaggle:// handles need pip install kagglehub "
            "and Kaggle credentials)."
        ) from None
    shutil.rmtree(final, ignore_errors=True)
    scratch.rename(final)
    record(folder, relative)
    return final
