"""Typed configuration: frozen dataclasses, YAML files that extend each
other, and `--set key=value` overrides, all checked before the work starts.

A config file is a YAML mapping of sections; `extends: parent.yaml` (relative
to the file) names the file it changes. Keys are handled flat
(`train.epochs`, `task.metric.name`) so that merging, overriding and error
messages all speak the same dotted names. Two kinds of leaf hold structure:
lists of records (`task.heads`: each item a mapping checked field by field,
errors naming `task.heads[1].kind`) and mappings with free keys
(`synth.prevalence`, overridable one key at a time:
`--set synth.prevalence.<label>=0.01`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from competition.augmentation import check_augment
from competition.data.pixelspec import CROPS, DICOM_ONLY, MODES, PixelSpec, model_input_shape
from competition.data.windows import DEFAULT_WINDOWS
from competition.errors import ConfigError
from competition.fileio import write_text_atomic
from competition.inference.ensemble import ENSEMBLE_METHODS, PROBABILITY_ONLY
from competition.inference.tta import TTA_VIEWS
from competition.synthetic import STAND_INS
from competition.task import TaskSpec, check_task, check_task_files
from competition.training.backbones import BACKBONE_NAMES

__all__ = ["Config", "ConfigError", "check_fold", "load_config"]
ENSEMBLES = tuple(ENSEMBLE_METHODS)
# Head CT (RSNA ICH winners: a horizontal flip, a small shift-scale-rotate,
# brightness and contrast); the presets choose their own (configs/*.yaml).
DEFAULT_AUGMENT = [
    {"RandomFlip": {"mode": "horizontal"}},
    {"RandomRotation": {"factor": 0.03, "fill_mode": "constant"}},
    {"RandomZoom": {"height_factor": 0.1, "fill_mode": "constant"}},
    {"RandomBrightness": {"factor": 0.1}},
    {"RandomContrast": {"factor": 0.1}},
]


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


@dataclass(frozen=True)
class DataConfig:
    root: str = "data/competition"
    workers: int = knob(0, ge=0)
    source: Literal["auto", "cache", "files"] = "auto"
    cache_dir: str = "cache"
    build_cache: bool = False
    cache_codec: Literal["auto", "raw", "zstd", "png", "jpeg"] = "auto"
    cache_quality: int = knob(90, ge=1, le=100)


@dataclass(frozen=True)
class SynthConfig:
    generate: bool = False
    kind: Literal[STAND_INS] = "head_ct"
    seed: int = 0
    patients: int = knob(60, ge=2)
    images_per_patient: list[int] = knob([1, 4])
    max_studies_per_patient: int = knob(3, ge=1)
    multi_study_fraction: float = knob(0.25, ge=0, le=1)
    slices_per_series: list[int] = knob([20, 40])
    image_size: int = knob(512, ge=32)
    test_fraction: float = knob(0.2, ge=0, le=0.9)
    noise_hu: float = knob(5.0, ge=0)
    prevalence: dict[str, float] = knob({})


@dataclass(frozen=True)
class PreprocessConfig:
    mode: Literal[MODES] = "ct_windows"
    windows: list[list[float]] = knob([list(w) for w in DEFAULT_WINDOWS])
    image_size: int | list[int] = knob(256, ge=8)
    keep_aspect: bool = False
    crop: Literal[CROPS] = "none"
    channels: int | None = knob(None, ge=1, le=4)
    neighbors: int = knob(0, ge=0, le=8)
    neighbor_windows: list[int] | list[list[int]] | None = None


@dataclass(frozen=True)
class FoldsConfig:
    k: int = knob(5, ge=2)
    seed: int = 42


@dataclass(frozen=True)
class ModelConfig:
    backbone: Literal[BACKBONE_NAMES] = "efficientnet_b0"
    weights: str | None = None
    input_adapter: Literal["none", "repeat", "project"] = "none"
    pooling: Literal["avg", "max", "gem"] = "avg"
    dropout: float = knob(0.2, ge=0, le=0.9)
    safe_mode: bool = True


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = knob(4, ge=1)
    batch_size: int = knob(32, ge=1)
    learning_rate: float = knob(1e-3, gt=0)
    weight_decay: float = knob(1e-4, ge=0)
    warmup_epochs: float = knob(0.5, ge=0)
    min_lr_ratio: float = knob(0.05, ge=0, le=1)
    early_stopping_patience: int = knob(3, ge=1)
    augment: bool = True
    augment_on: Literal["auto", "graph", "host"] = "auto"
    workers: int = knob(2, ge=0)
    use_multiprocessing: bool = False
    max_queue_size: int = knob(10, ge=1)
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"] = "none"
    jit_compile: bool = False
    strategy: Literal["auto", "none", "mirrored"] = "auto"
    steps_per_execution: int = knob(1, ge=1)
    steps_per_epoch: int = knob(0, ge=0)
    sample_weights: dict[str, float] = knob({})


@dataclass(frozen=True)
class SequenceConfig:
    rnn: Literal["gru", "lstm"] = "gru"
    layers: int = knob(2, ge=1, le=4)
    units: int = knob(64, ge=4)
    dropout: float = knob(0.2, ge=0, le=0.9)
    epochs: int = knob(15, ge=1)
    batch_size: int = knob(16, ge=1)
    learning_rate: float = knob(1e-3, gt=0)
    weight_decay: float = knob(1e-4, ge=0)
    warmup_epochs: float = knob(0.5, ge=0)
    min_lr_ratio: float = knob(0.05, ge=0, le=1)
    early_stopping_patience: int = knob(5, ge=1)
    reverse: float = knob(0.5, ge=0, le=1)
    drop_alternate: float = knob(0.2, ge=0, le=1)
    reverse_tta: bool = True


@dataclass(frozen=True)
class PredictConfig:
    stage: Literal["auto", 1, 2] = "auto"
    folds: list[int] | None = None
    tta: list[Literal[TTA_VIEWS]] = knob(["identity", "hflip"])
    ensemble: Literal[ENSEMBLES] = "mean"
    batch_size: int = knob(64, ge=1)
    submissions_dir: str = "submissions"


@dataclass(frozen=True)
class KaggleConfig:
    username: str | None = None
    competition: str | None = None
    dataset_slug: str | None = None
    kernel_slug: str | None = None
    enable_gpu: bool = True
    python: str = "3.12"
    license: str = "CC0-1.0"
    max_dataset_gb: float = knob(100.0, gt=0)
    build_dir: str = "build/kaggle"


@dataclass(frozen=True)
class Config:
    experiment: str = "base"
    seed: int = 42
    runs_dir: str = "runs"
    task: TaskSpec = field(default_factory=TaskSpec)
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    augment: list[dict] = knob(DEFAULT_AUGMENT)  # Keras layers in order: see augmentation.py
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
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


def _is_mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def _record_type(annotation: Any) -> type | None:
    """The dataclass of a list-of-records leaf (`list[Head]`), else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _type_name(annotation: Any) -> str:
    """How an error message says what a key expects."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if _record_type(annotation):
        names = [f.name for f in dataclasses.fields(_record_type(annotation))]
        return f"a list of mappings with keys {', '.join(names)}"
    if origin is list:
        inner = args[0]
        if typing.get_origin(inner) is Literal:
            return "a list of values among " + ", ".join(map(repr, typing.get_args(inner)))
        return f"a list of {_type_name(inner)}"
    if origin is dict:
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "null"
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
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        return isinstance(value, dict) and all(
            _fits(k, key_type) and _fits(v, value_type) for k, v in value.items()
        )
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, annotation)
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


def _floats(value: Any, annotation: Any) -> Any:
    """Ints where the type says float (YAML reads `2` as an int)."""
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):  # the first member the value fits
        fitting = [a for a in typing.get_args(annotation) if _fits(value, a)]
        return _floats(value, fitting[0]) if fitting else value
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(annotation)
        return [_floats(v, item) for v in value]
    if origin is dict and isinstance(value, dict):
        return {k: _floats(v, typing.get_args(annotation)[1]) for k, v in value.items()}
    return value


def _record(cls: type, key: str, value: Any, source: str) -> Any:
    """One item of a list-of-records leaf, checked field by field."""
    if not isinstance(value, dict):
        raise ConfigError(
            f"Config key '{key}' expects a mapping. Received: {value!r} "
            f"({type(value).__name__}, from {source})"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in value:
        if name not in fields:
            raise ConfigError(
                f"Unknown config key '{key}.{name}' (from {source}). "
                f"Known keys: {', '.join(fields)}"
            )
    missing = [
        n
        for n, f in fields.items()
        if n not in value
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"Config key '{key}' needs {', '.join(missing)} (from {source})")
    checked = {
        name: _checked(f"{key}.{name}", item, hints[name], fields[name].metadata, source)
        for name, item in value.items()
    }
    return cls(**checked)


def _checked(key: str, value: Any, annotation: Any, meta: typing.Mapping, source: str) -> Any:
    """`value` converted to the type, or a ConfigError naming the key."""
    record = _record_type(annotation)
    if record is not None and isinstance(value, list):
        return [_record(record, f"{key}[{i}]", item, source) for i, item in enumerate(value)]
    if not _fits(value, annotation):
        raise ConfigError(
            f"Config key '{key}' expects {_type_name(annotation)}. "
            f"Received: {value!r} ({type(value).__name__}, from {source})"
        )
    expected = _range_error(value, meta)
    if expected:
        raise ConfigError(
            f"Config key '{key}' must be {expected}. Received: {value!r} (from {source})"
        )
    return _floats(value, annotation)


def _unknown_key(key: str, source: str) -> ConfigError:
    if key.startswith("augment."):
        return ConfigError(
            f"Unknown config key '{key}' (from {source}): augment is a list of Keras "
            "augmentation layers with their arguments, e.g. augment: [{RandomFlip: {mode: "
            "horizontal}}, {RandomRotation: {factor: 0.03}}] (see configs/base.yaml)"
        )
    close = difflib.get_close_matches(key, SCHEMA, n=3)
    section = key.rsplit(".", 1)[0] + "." if "." in key else ""
    known = [k for k in SCHEMA if k.startswith(section)] or sorted(SCHEMA)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(
        f"Unknown config key '{key}' (from {source}).{hint} Known keys: {', '.join(known)}"
    )


def check_value(key: str, value: Any, source: str) -> Any:
    """Return `value` converted to the field's type, or raise ConfigError."""
    if key not in SCHEMA:
        raise _unknown_key(key, source)
    leaf = SCHEMA[key]
    return _checked(key, value, leaf.annotation, leaf.meta, source)


# --- files and overrides ----------------------------------------------------


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys down to the schema's leaves (a mapping leaf stays whole)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        leaf = SCHEMA.get(dotted)
        if isinstance(value, dict) and not (leaf and _is_mapping(leaf.annotation)):
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
    for key, value in _flatten(data).items():
        _merge(values, key, value, str(path))
    return values


_ITEM_FIELD = re.compile(r"(?P<leaf>.+)\[(?P<index>\d+)\]\.(?P<field>\w+)")


def _merge(values: dict[str, tuple[Any, str]], key: str, value: Any, source: str) -> None:
    """Set `key`. A key below a mapping leaf (`synth.prevalence.x`) sets one
    entry; `leaf[i].field` (`task.heads[0].columns`) sets one field of one record."""
    parent, _, name = key.rpartition(".")
    leaf = SCHEMA.get(parent)
    item = _ITEM_FIELD.fullmatch(key)
    if key not in SCHEMA and leaf is not None and _is_mapping(leaf.annotation):
        mapping = dict(values.get(parent, ({}, source))[0] or {})
        mapping[name] = value
        values[parent] = (mapping, source)
    elif item and item["leaf"] in SCHEMA and _record_type(SCHEMA[item["leaf"]].annotation):
        records = list(values.get(item["leaf"], ([], source))[0] or [])
        index = int(item["index"])
        if index >= len(records) or not isinstance(records[index], dict):
            raise ConfigError(
                f"Config key '{key}' ({source}): '{item['leaf']}' has {len(records)} entries, "
                f"so there is no [{index}]"
            )
        records[index] = {**records[index], item["field"]: value}
        values[item["leaf"]] = (records, source)
    else:
        values[key] = (value, source)


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` -> (key, YAML-parsed value). A value YAML cannot
    parse is the plain string it is (`{split_dir}/{image_id}.png`); the
    key's type check still applies."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"An override must look like section.key=value. Received: {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw.strip()
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


def read_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """The config `path` (default configs/default.yaml) and its parents with
    `section.key=value` overrides, every value type-checked; the checks that
    span several keys are `validate`'s."""
    chain = _read_chain(Path(path) if path else default_config_path())
    for text in overrides:
        key, value = parse_override(text)
        _merge(chain, key, value, f"--set {text}")
    checked = {key: check_value(key, value, source) for key, (value, source) in chain.items()}
    return _build(Config, _unflatten(checked))


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """read_config, then every check that spans keys (and the task's files)."""
    config = read_config(path, overrides)
    validate(config)
    return config


def check_fold(fold: int, k: int) -> int:
    """A fold number that exists for folds.k = k."""
    if not 0 <= fold < k:
        raise ConfigError(f"fold must be in 0..{k - 1} (folds.k={k}). Received: fold={fold}")
    return fold


def _check_preprocess(config: Config) -> None:
    p = config.preprocess
    size = p.image_size
    if isinstance(size, list) and (len(size) != 2 or min(size) < 8):
        raise ConfigError(
            "Config key 'preprocess.image_size' expects rows = cols (>= 8) or [rows, cols], "
            f"each >= 8. Received: {size!r}"
        )
    image_format = config.task.image_format
    if p.mode in DICOM_ONLY and image_format != "dicom":
        raise ConfigError(
            f"Config key 'preprocess.mode' {p.mode} reads DICOM headers; the task's images are "
            f"{image_format} (task.images.path). Use color or gray. Received: {p.mode!r}"
        )
    natural = {"ct_windows": len(p.windows), "color": 3}.get(p.mode, 1)
    if p.channels not in (None, natural) and natural != 1 and p.channels != 1:
        raise ConfigError(
            f"Config key 'preprocess.channels' can be {natural} (the {p.mode} channels), 1 "
            f"(their gray average) or null for mode {p.mode}. Received: {p.channels!r}"
        )
    _check_neighbors(config)


def _check_neighbors(config: Config) -> None:
    """2.5D stacks need series of slices; each pick names one of a slice's channels."""
    p = config.preprocess
    if p.neighbors and config.task.image_format != "dicom":
        raise ConfigError(
            f"Config key 'preprocess.neighbors' stacks neighbouring slices of a series; the "
            f"task's images are {config.task.image_format} files, which do not form series. "
            f"Set it to 0. Received: {p.neighbors!r}"
        )
    if p.neighbor_windows is None:
        return
    channels = PixelSpec.from_config(config).input_shape[2]
    nested = bool(p.neighbor_windows) and isinstance(p.neighbor_windows[0], list)
    lists = p.neighbor_windows if nested else [p.neighbor_windows]
    width = 2 * p.neighbors + 1
    if nested and len(lists) != width:
        raise ConfigError(
            f"Config key 'preprocess.neighbor_windows' as a list of lists needs one list per "
            f"slice of the stack ({width} for neighbors={p.neighbors}). "
            f"Received: {p.neighbor_windows!r}"
        )
    if not all(lists) or any(not 0 <= c < channels for picks in lists for c in picks):
        raise ConfigError(
            f"Config key 'preprocess.neighbor_windows' picks each slice's channels by index, "
            f"0..{channels - 1} here; every slice needs at least one. "
            f"Received: {p.neighbor_windows!r}"
        )


def _check_sample_weights(config: Config) -> None:
    """Weights by 0/1 label column, each >= 1 (a sample is never drawn less than once a pass)."""
    yes_no = [c for h in config.task.heads if h.kind in ("multilabel", "binary") for c in h.columns]
    for column, weight in config.train.sample_weights.items():
        if column not in yes_no:
            raise ConfigError(
                f"Config key 'train.sample_weights' names {column!r}, which is not a 0/1 label "
                f"column of the task. Expected one of: {', '.join(yes_no) or '(none)'}"
            )
        if weight < 1:
            raise ConfigError(
                f"Config key 'train.sample_weights.{column}' expects a weight >= 1 (draws per "
                f"pass of an image positive for it). Received: {weight}"
            )


# An experiment names a folder under runs_dir: letters, digits, '.', '_', '-', not
# starting with a dot (no '..', no hidden folder), no separator (never outside runs_dir).
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _check_experiment(name: str) -> None:
    if not EXPERIMENT_NAME.fullmatch(name):
        raise ConfigError(
            "Config key 'experiment' names a folder under runs_dir: 1 to 128 letters, digits, "
            f"'.', '_' or '-', starting with a letter or digit. Received: {name!r}"
        )


def validate(config: Config) -> None:
    """Checks that span several keys."""
    _check_experiment(config.experiment)
    for key in ("slices_per_series", "images_per_patient"):
        span = getattr(config.synth, key)
        if len(span) != 2 or not 1 <= span[0] <= span[1]:
            raise ConfigError(
                f"Config key 'synth.{key}' expects [min, max] with 1 <= min <= max. "
                f"Received: {span!r}"
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
    check_task(config.task)
    _check_preprocess(config)
    check_augment(
        config.augment,
        model_input_shape(config)[2],
        {head.name: head.kind for head in config.task.heads},
    )
    _check_sample_weights(config)
    if config.train.augment_on == "host" and config.train.use_multiprocessing:
        raise ConfigError(
            "Config key 'train.augment_on' host runs the augmentation layers (TensorFlow) in "
            "the loader's workers, and TensorFlow does not run in forked worker processes "
            "(train.use_multiprocessing: true). Use graph or auto, or thread workers. "
            "Received: host"
        )
    if config.predict.ensemble in PROBABILITY_ONLY and not all(
        head.probabilities for head in config.task.heads
    ):
        raise ConfigError(
            f"Config key 'predict.ensemble' cannot be {config.predict.ensemble}: it averages "
            "log-odds, and the task has a regression (ordinal) head. Use mean or rank."
        )
    check_task_files(config.task, Path(config.data.root))
