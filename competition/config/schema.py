"""The config's schema, flat: every leaf key of `Config` (`train.epochs`,
`task.metric.name`) with its type and range, and the check of one value
against it. Two kinds of leaf hold structure: lists of records
(`task.heads`: each item a mapping checked field by field, errors naming
`task.heads[1].kind`) and mappings with free keys (`synth.prevalence`).
Every error names the key, what it expects, the value received and where
the value came from (`origin`: a file, or `--set ...`)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from competition.config.sections import Config
from competition.errors import ConfigError


@dataclass(frozen=True)
class _Leaf:
    annotation: Any
    meta: typing.Mapping[str, Any]


def _schema(cls: type, prefix: str = "") -> dict[str, _Leaf]:
    hints = typing.get_type_hints(cls)
    leaves: dict[str, _Leaf] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            leaves.update(_schema(hints[f.name], key + "."))
        else:
            leaves[key] = _Leaf(hints[f.name], f.metadata)
    return leaves


SCHEMA = _schema(Config)


def is_mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def record_type(annotation: Any) -> type | None:
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
    if record_type(annotation):
        names = [f.name for f in dataclasses.fields(record_type(annotation))]
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


def _record(cls: type, key: str, value: Any, origin: str) -> Any:
    """One item of a list-of-records leaf, checked field by field."""
    if not isinstance(value, dict):
        raise ConfigError(
            f"Config key '{key}' expects a mapping. Received: {value!r} "
            f"({type(value).__name__}, from {origin})"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in value:
        if name not in fields:
            raise ConfigError(
                f"Unknown config key '{key}.{name}' (from {origin}). "
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
        raise ConfigError(f"Config key '{key}' needs {', '.join(missing)} (from {origin})")
    checked = {
        name: _checked(f"{key}.{name}", item, hints[name], fields[name].metadata, origin)
        for name, item in value.items()
    }
    return cls(**checked)


def _checked(key: str, value: Any, annotation: Any, meta: typing.Mapping, origin: str) -> Any:
    """`value` converted to the type, or a ConfigError naming the key."""
    record = record_type(annotation)
    if record is not None and isinstance(value, list):
        return [_record(record, f"{key}[{i}]", item, origin) for i, item in enumerate(value)]
    if not _fits(value, annotation):
        raise ConfigError(
            f"Config key '{key}' expects {_type_name(annotation)}. "
            f"Received: {value!r} ({type(value).__name__}, from {origin})"
        )
    expected = _range_error(value, meta)
    if expected:
        raise ConfigError(
            f"Config key '{key}' must be {expected}. Received: {value!r} (from {origin})"
        )
    return _floats(value, annotation)


def _unknown_key(key: str, origin: str) -> ConfigError:
    if key.startswith("augment."):
        return ConfigError(
            f"Unknown config key '{key}' (from {origin}): augment is a list of Keras "
            "augmentation layers with their arguments, e.g. augment: [{RandomFlip: {mode: "
            "horizontal}}, {RandomRotation: {factor: 0.03}}] (see configs/base.yaml)"
        )
    close = difflib.get_close_matches(key, SCHEMA, n=3)
    section = key.rsplit(".", 1)[0] + "." if "." in key else ""
    known = [k for k in SCHEMA if k.startswith(section)] or sorted(SCHEMA)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(
        f"Unknown config key '{key}' (from {origin}).{hint} Known keys: {', '.join(known)}"
    )


def check_value(key: str, value: Any, origin: str) -> Any:
    """Return `value` converted to the field's type, or raise ConfigError."""
    if key not in SCHEMA:
        raise _unknown_key(key, origin)
    leaf = SCHEMA[key]
    return _checked(key, value, leaf.annotation, leaf.meta, origin)
