"""A sweep file: the config overrides of each point, as a grid (every
combination), a list, or both; each point trains in its own experiment
folder, named from its overrides so that a re-run finds it again.

    grid:
      train.learning_rate: [0.001, 0.003]
      model.dropout: [0.1, 0.3]
    points:
      - {model.backbone: efficientnet_b0, preprocess.image_size: 256}
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from pathlib import Path

import yaml

from competition.config import check_value
from competition.errors import ConfigError

MAX_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def read_sweep(path: Path) -> list[dict]:
    """The points of the sweep file, each a {key: value} of checked overrides."""
    try:
        found = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"Cannot read the sweep file {path}: {exc}") from None
    if (
        not isinstance(found, dict)
        or not set(found) & {"grid", "points"}
        or set(found)
        - {
            "grid",
            "points",
        }
    ):
        raise ConfigError(
            f"{path}: a sweep file is a mapping with `grid:` (key: [values]) and/or `points:` "
            f"(a list of {{key: value}}). Received: {_shape(found)}"
        )
    points = [*_grid_points(path, found.get("grid") or {}), *_listed(path, found.get("points"))]
    for point in points:
        for key, value in point.items():
            check_value(key, value, f"sweep file {path}")
    names = [point_name("x", point) for point in points]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: the same point is listed twice ({twice[0][2:]})")
    return points


def _shape(found) -> str:
    return f"keys {sorted(found)}" if isinstance(found, dict) else type(found).__name__


def _grid_points(path: Path, grid) -> list[dict]:
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: `grid:` maps each key to a non-empty list of values")
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def _listed(path: Path, points) -> list[dict]:
    if points is None:
        return []
    if not isinstance(points, list) or not all(isinstance(p, dict) and p for p in points):
        raise ConfigError(f"{path}: `points:` is a list of non-empty {{key: value}} mappings")
    return points


def overrides(point: dict) -> list[str]:
    """The point as --set overrides (values in YAML flow form)."""
    return [f"{key}={json.dumps(value)}" for key, value in sorted(point.items())]


def point_name(base: str, point: dict) -> str:
    """`<base>--key-value--key-value`, filesystem-safe, the same for the same
    overrides in whatever order; a long one is cut and ends with a hash."""
    parts = [
        f"{key}-{_UNSAFE.sub('-', str(value)).strip('-')}" for key, value in sorted(point.items())
    ]
    name = "--".join([base, *parts])
    if len(name) > MAX_NAME:
        digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
        name = f"{name[: MAX_NAME - 9]}-{digest}"
    return name


def ranking(rows: list[dict], lower_is_better: bool) -> str:
    """Markdown: the points ranked by pooled CV score (unscored ones last)."""

    def key(row):
        score = row.get("score")
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return (1, 0.0)
        return (0, score if lower_is_better else -score)

    better = "lower" if lower_is_better else "higher"
    lines = [
        f"| rank | experiment | overrides | pooled CV ({better} is better) | folds |",
        "|---:|---|---|---:|---|",
    ]
    for rank, row in enumerate(sorted(rows, key=key), 1):
        score = row.get("score")
        shown = f"{score:.5f}" if isinstance(score, float) and not math.isnan(score) else "-"
        lines.append(
            f"| {rank} | {row['experiment']} | {' '.join(row['overrides']) or '(base)'} | "
            f"{shown} | {row['folds']} |"
        )
    return "\n".join(lines)
