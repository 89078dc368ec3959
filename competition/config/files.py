"""Config files and overrides -> the checked Config.

A config file is a YAML mapping of sections; `extends: parent.yaml`
(relative to the file) names the file it changes. Keys are handled flat
(`train.epochs`, `task.metric.name`), so that merging, overriding and error
messages speak the same dotted names: a key below a mapping leaf
(`--set synth.prevalence.<label>=0.01`) sets one entry, `leaf[i].field`
(`task.heads[0].columns`) one field of one record. Keys the kit no longer
has but older configs (and the config.yaml of folds trained before) hold
are translated (`RETIRED`), never silently dropped.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from competition.config.schema import SCHEMA, check_value, is_mapping, record_type
from competition.config.sections import Config
from competition.errors import ConfigError


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys down to the schema's leaves (a mapping leaf stays whole)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        leaf = SCHEMA.get(dotted)
        if isinstance(value, dict) and not (leaf and is_mapping(leaf.annotation)):
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
    """Flat {key: (value, the file it came from)} for `path` and the files it extends."""
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


def _merge(values: dict[str, tuple[Any, str]], key: str, value: Any, origin: str) -> None:
    """Set `key`. A key below a mapping leaf (`synth.prevalence.x`) sets one
    entry; `leaf[i].field` (`task.heads[0].columns`) sets one field of one record."""
    parent, _, name = key.rpartition(".")
    leaf = SCHEMA.get(parent)
    item = _ITEM_FIELD.fullmatch(key)
    if key not in SCHEMA and leaf is not None and is_mapping(leaf.annotation):
        mapping = dict(values.get(parent, ({}, origin))[0] or {})
        mapping[name] = value
        values[parent] = (mapping, origin)
    elif item and item["leaf"] in SCHEMA and record_type(SCHEMA[item["leaf"]].annotation):
        records = list(values.get(item["leaf"], ([], origin))[0] or [])
        index = int(item["index"])
        if index >= len(records) or not isinstance(records[index], dict):
            raise ConfigError(
                f"Config key '{key}' ({origin}): '{item['leaf']}' has {len(records)} entries, "
                f"so there is no [{index}]"
            )
        records[index] = {**records[index], item["field"]: value}
        values[item["leaf"]] = (records, origin)
    else:
        values[key] = (value, origin)


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
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
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
    retire(chain)
    checked = {key: check_value(key, value, origin) for key, (value, origin) in chain.items()}
    return _build(Config, _unflatten(checked))


def _augment_switch(value: Any, origin: str) -> dict[str, Any]:
    """`train.augment: false` (before the augmentation was a list) is `augment: []`."""
    if not isinstance(value, bool):
        raise ConfigError(
            "Config key 'train.augment' (retired: the augmentation is the `augment` list, and "
            "`augment: []` turns it off) expects true or false. "
            f"Received: {value!r} (from {origin})"
        )
    return {} if value else {"augment": []}


# Retired key -> what it becomes (a mapping of current keys to values).
RETIRED = {"train.augment": _augment_switch}


def retire(values: dict[str, tuple[Any, str]]) -> None:
    """Translate the retired keys of a flat {key: (value, origin)}, in place."""
    for key, translate in RETIRED.items():
        if key in values:
            value, origin = values.pop(key)
            for new, replacement in translate(value, origin).items():
                values[new] = (replacement, origin)


def upgrade(tree: dict) -> dict:
    """A saved config tree (a fold's config.yaml) with its retired keys translated."""
    flat = {key: (value, "saved") for key, value in _flatten(tree).items()}
    retire(flat)
    return _unflatten({key: value for key, (value, _) in flat.items()})
