"""What `make bench-gpu` measures: its options, and the setups they make (a
config file with overrides, on a synthetic stand-in of its own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from competition.config.files import default_config_path
from competition.errors import ConfigError

SLICES_PER_PATIENT = 28  # training slices a synthetic head-CT patient gives, about


@dataclass(frozen=True)
class Options:
    backends: tuple[str, ...]
    backbone: str = "efficientnet_b0"
    image_size: int = 256
    batch_size: int = 128
    precision: str = "mixed_bfloat16"
    preset: str | None = "rsna_ich"  # None: the headline setup alone
    preset_overrides: tuple[str, ...] = ()
    images: int = 1024  # training images the kit's generator cycles through
    steps: int = 32  # steps of each timed fit epoch
    rounds: int = 2  # timed runs of each feed, alternating (the fastest counts)
    synth_size: int = 512  # the stand-in's slices, as the real ones
    folder: Path = Path("build/bench-gpu")


# --small: a run sized for a CPU (minutes on 2 cores).
SMALL = {
    "image_size": 64,
    "batch_size": 16,
    "precision": "auto",
    "images": 256,
    "steps": 8,
    "synth_size": 128,
    "preset_overrides": ("preprocess.image_size=64", "train.batch_size=16"),
}


@dataclass(frozen=True)
class Setup:
    name: str
    config: str | None  # a config file (None: configs/default.yaml)
    overrides: list[str] = field(default_factory=list)


def _on_bench_data(o: Options, name: str) -> list[str]:
    """A synthetic stand-in of the setup's own under the bench's folder, one device."""
    patients = max(4, o.images // SLICES_PER_PATIENT + 1)
    return [
        f"data.root={o.folder / name}",
        f"runs_dir={o.folder / 'runs'}",
        "synth.generate=true",
        f"synth.patients={patients}",
        f"synth.image_size={o.synth_size}",
        "model.weights=null",  # the speed is the same, and nothing is downloaded
        "train.strategy=none",
    ]


def preset_path(name: str) -> Path:
    path = default_config_path().parent / f"{name}.yaml"
    if not path.is_file():
        presets = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(
            f"bench-gpu --preset {name!r}: no {path}. Presets: {', '.join(presets)}, or none."
        )
    return path


def setups(config: str | None, overrides: list[str], o: Options) -> list[Setup]:
    """The headline setup (the config with the options' model, size, batch,
    precision; 2D) and the preset at its own settings."""
    headline = Setup(
        f"{o.backbone} {o.image_size}px batch {o.batch_size} {o.precision}",
        config,
        [
            *overrides,
            *_on_bench_data(o, "headline"),
            f"model.backbone={o.backbone}",
            f"preprocess.image_size={o.image_size}",
            "preprocess.neighbors=0",
            f"train.batch_size={o.batch_size}",
            f"predict.batch_size={o.batch_size}",
            f"train.mixed_precision={o.precision}",
        ],
    )
    if not o.preset:
        return [headline]
    preset = Setup(
        f"{o.preset} preset",
        str(preset_path(o.preset)),
        [*_on_bench_data(o, o.preset), *o.preset_overrides],
    )
    return [headline, preset]
