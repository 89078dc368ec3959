"""The kit's configuration, above every stage: the sections each stage
defines (`sections.py`), their schema and value checks (`schema.py`), YAML
files with `extends` and `--set` overrides (`files.py`), and the checks
that span keys (`checks.py`). `load_config` is all of it in one call."""

from __future__ import annotations

import typing
from pathlib import Path

from competition.config.checks import check_fold, validate
from competition.config.files import parse_override, read_config
from competition.config.schema import SCHEMA, check_value
from competition.config.sections import Config
from competition.errors import ConfigError

__all__ = [
    "SCHEMA",
    "Config",
    "ConfigError",
    "check_fold",
    "check_value",
    "load_config",
    "parse_override",
    "read_config",
]


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """The config file `path` (default configs/default.yaml) with its parents
    and `section.key=value` overrides, every value and every check that spans
    keys (and the task's CSV headers, when the files are there) done."""
    config = read_config(path, overrides)
    validate(config)
    return config
