"""Typed configuration: dataclasses, YAML files that extend each other, and
`--set key=value` overrides, all checked before any work starts.

A config file is a YAML mapping of sections; `extends: parent.yaml` (relative
to the file) names the file it changes. Keys are handled flat (`train.epochs`)
so that merging, overriding and error messages all speak the same dotted names.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from competition.errors import KitError
from competition.fileio import write_text_atomic


class ConfigError(KitError, ValueError):
    """A config file or override that does not fit the schema."""


def knob(
    default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> Any:
    """A config field with an optional numeric range (checked on load)."""
    meta = {"ge": ge, "gt": gt, "le": le}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


@dataclass
class DataConfig:
    root: str = "data/rsna-intracranial-hemorrhage-detection"
    train_dir: str = "stage_2_train"
    test_dir: str = "stage_2_test"
    train_csv: str = "stage_2_train.csv"
    sample_submission: str = "stage_2_sample_submission.csv"
    workers: int = knob(0, ge=0)
    source: Literal["auto", "cache", "dicom"] = "auto"
    cache_dir: str = "cache"


@dataclass
class PrevalenceConfig:
    epidural: float = knob(0.006, ge=0, le=0.5)
    intraparenchymal: float = knob(0.05, ge=0, le=0.5)
    intraventricular: float = knob(0.035, ge=0, le=0.5)
    subarachnoid: float = knob(0.047, ge=0, le=0.5)
    subdural: float = knob(0.063, ge=0, le=0.5)


@dataclass
class SynthConfig:
    generate: bool = False
    seed: int = 0
    patients: int = knob(60, ge=2)
    max_studies_per_patient: int = knob(3, ge=1)
    multi_study_fraction: float = knob(0.25, ge=0, le=1)
    slices_per_series: list[int] = knob([20, 40])
    image_size: int = knob(512, ge=32)
    test_fraction: float = knob(0.2, ge=0, le=0.9)
    noise_hu: float = knob(6.0, ge=0)
    prevalence: PrevalenceConfig = field(default_factory=PrevalenceConfig)


@dataclass
class PreprocessConfig:
    windows: list[list[float]] = knob([[40, 80], [80, 200], [40, 380]])
    image_size: int = knob(256, ge=8)


@dataclass
class FoldsConfig:
    k: int = knob(5, ge=2)
    seed: int = 42
    stratify: Literal[
        "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"
    ] = "any"


@dataclass
class AugmentConfig:
    hflip: float = knob(0.5, ge=0, le=1)
    vflip: float = knob(0.0, ge=0, le=1)
    rotate: float = knob(10.0, ge=0, le=180)
    scale: float = knob(0.1, ge=0, le=0.5)
    shift: float = knob(0.05, ge=0, le=0.5)
    brightness: float = knob(0.1, ge=0, le=1)
    contrast: float = knob(0.1, ge=0, le=1)


@dataclass
class ModelConfig:
    backbone: Literal[
        "efficientnet_b0", "efficientnetv2_b0", "resnet50", "convnext_tiny", "tiny_cnn"
    ] = "efficientnet_b0"
    weights: str | None = None
    dropout: float = knob(0.2, ge=0, le=0.9)
    safe_mode: bool = True


@dataclass
class TrainConfig:
    epochs: int = knob(4, ge=1)
    batch_size: int = knob(32, ge=1)
    learning_rate: float = knob(1e-3, gt=0)
    weight_decay: float = knob(1e-4, ge=0)
    warmup_epochs: float = knob(0.5, ge=0)
    min_lr_ratio: float = knob(0.05, ge=0, le=1)
    early_stopping_patience: int = knob(3, ge=1)
    augment: bool = True
    workers: int = knob(2, ge=1)
    use_multiprocessing: bool = False
    max_queue_size: int = knob(10, ge=1)
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"] = "none"
    jit_compile: bool = False
    strategy: Literal["auto", "none", "mirrored"] = "auto"
    steps_per_execution: int = knob(1, ge=1)


@dataclass
class PredictConfig:
    folds: list[int] | None = None
    tta: list[Literal["identity", "hflip", "vflip", "hvflip"]] = knob(["identity", "hflip"])
    ensemble: Literal["mean", "geometric", "rank"] = "mean"
    batch_size: int = knob(64, ge=1)
    clip: float = knob(1e-4, gt=0, le=0.1)
    any_consistency: bool = True
    submissions_dir: str = "submissions"


@dataclass
class KaggleConfig:
    username: str | None = None
    competition: str = "rsna-intracranial-hemorrhage-detection"
    dataset_slug: str | None = None
    kernel_slug: str | None = None
    enable_gpu: bool = True
    python: str = "3.12"
    license: str = "CC0-1.0"
    max_dataset_gb: float = knob(100.0, gt=0)
    build_dir: str = "build/kaggle"


@dataclass
class Config:
    experiment: str = "base"
    seed: int = 42
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    kaggle: KaggleConfig = field(default_factory=KaggleConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config (atomically) next to what it produced."""
        return write_text_atomic(path, self.to_yaml())


# --- the schema, flat -------------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    annotation: Any
    meta: typing.Mapping[str, Any]


def _schema(cls: type = Config, prefix: str = "") -> dict[str, _Leaf]:
    hints = typing.get_type_hints(cls)
    leaves: dict[str, _Leaf] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            leaves.update(_schema(hints[f.name], key + "."))
        else:
            leaves[key] = _Leaf(hints[f.name], f.metadata)
    return leaves


SCHEMA = _schema()


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    if origin in (list, types.UnionType, typing.Union):
        return str(annotation).replace("typing.", "")
    return annotation.__name__


def _fits(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, arg) for arg in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _range_error(value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value):  # YAML reads .nan and .inf as floats
        return "a finite number"
    if meta.get("ge") is not None and value < meta["ge"]:
        return f">= {meta['ge']}"
    if meta.get("gt") is not None and value <= meta["gt"]:
        return f"> {meta['gt']}"
    if meta.get("le") is not None and value > meta["le"]:
        return f"<= {meta['le']}"
    return None


def check_value(key: str, value: Any, source: str) -> Any:
    """Return `value` converted to the field's type, or raise ConfigError."""
    if key not in SCHEMA:
        close = difflib.get_close_matches(key, SCHEMA, n=3)
        section = key.split(".")[0] + "."
        known = [k for k in SCHEMA if k.startswith(section)] or sorted(SCHEMA)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(
            f"Unknown config key '{key}' (from {source}).{hint} Known keys: {', '.join(known)}"
        )
    leaf = SCHEMA[key]
    if not _fits(value, leaf.annotation):
        raise ConfigError(
            f"Config key '{key}' expects {_type_name(leaf.annotation)}. "
            f"Received: {value!r} ({type(value).__name__}, from {source})"
        )
    expected = _range_error(value, leaf.meta)
    if expected:
        raise ConfigError(
            f"Config key '{key}' must be {expected}. Received: {value!r} (from {source})"
        )
    if leaf.annotation is float:
        return float(value)
    return value


# --- files and overrides ----------------------------------------------------


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of sections. Received: {type(data).__name__}"
        )
    return data


def _read_chain(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, tuple[Any, str]]:
    """Flat {key: (value, source file)} for `path` and the files it extends."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"Config files extend each other in a loop: {[str(p) for p in seen]}")
    data = _read_yaml_mapping(path)
    parent = data.pop("extends", None)
    values: dict[str, tuple[Any, str]] = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"'extends' in {path} must be a file name. Received: {parent!r}")
        values = _read_chain(path.parent / parent, (*seen, path))
    values.update({k: (v, str(path)) for k, v in _flatten(data).items()})
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` -> (key, YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"An override must look like section.key=value. Received: {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Override {text!r}: the value is not valid YAML ({exc})") from None
    return key.strip(), value


def default_config_path() -> Path:
    """configs/default.yaml in the working folder, else in the kit's checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base / "configs" / "default.yaml"
        if candidate.exists():
            return candidate
    raise ConfigError(
        "No --config given and no configs/default.yaml found in the working folder "
        "or the kit's checkout."
    )


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *sections, name = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return tree


def _build(cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], values[f.name])
        else:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Read `path` (default configs/default.yaml) and its parents, apply
    `section.key=value` overrides, and check every value."""
    chain = _read_chain(Path(path) if path else default_config_path())
    for text in overrides:
        key, value = parse_override(text)
        chain[key] = (value, f"--set {text}")
    checked = {key: check_value(key, value, source) for key, (value, source) in chain.items()}
    config = _build(Config, _unflatten(checked))
    validate(config)
    return config


def check_fold(fold: int, k: int) -> int:
    """A fold number that exists for folds.k = k."""
    if not 0 <= fold < k:
        raise ConfigError(f"fold must be in 0..{k - 1} (folds.k={k}). Received: fold={fold}")
    return fold


def validate(config: Config) -> None:
    """Checks that span several keys."""
    span = config.synth.slices_per_series
    if len(span) != 2 or not 1 <= span[0] <= span[1]:
        raise ConfigError(
            "Config key 'synth.slices_per_series' expects [min, max] with 1 <= min <= max. "
            f"Received: {config.synth.slices_per_series!r}"
        )
    if not config.predict.tta:
        raise ConfigError("Config key 'predict.tta' needs at least one entry, e.g. [identity].")
    if config.predict.folds is not None and not all(
        0 <= f < config.folds.k for f in config.predict.folds
    ):
        raise ConfigError(
            f"Config key 'predict.folds' names folds outside 0..{config.folds.k - 1} "
            f"(folds.k={config.folds.k}). Received: {config.predict.folds!r}"
        )
    for window in config.preprocess.windows:
        if len(window) != 2 or window[1] <= 0:
            raise ConfigError(
                "Config key 'preprocess.windows' expects [center, width] pairs with width > 0. "
                f"Received: {config.preprocess.windows!r}"
            )
