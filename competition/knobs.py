"""A config field with its allowed range: what each stage's settings
section (a frozen dataclass) declares its keys with, and what the config's
schema reads back to check a value (`competition.config`)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

import yaml


def knob(
    default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> Any:
    """A field with a default and an optional numeric range (checked on load)."""
    meta = {"ge": ge, "gt": gt, "le": le}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))
