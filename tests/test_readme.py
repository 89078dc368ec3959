"""The README and docs/ name only what exists: make targets, config keys,
CLI commands, and the docs pages the README links to."""

from __future__ import annotations

import re

from competition.cli import COMMANDS
from competition.config import SCHEMA

from helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TARGETS = set(re.findall(r"(?m)^([a-z][a-z-]*):", (REPO / "Makefile").read_text()))
SECTIONS = {key.split(".")[0] for key in SCHEMA}


def named(pattern: str) -> set[tuple[str, str]]:
    return {(page.name, hit) for page in PAGES for hit in re.findall(pattern, page.read_text())}


def test_every_make_target_named_exists():
    # in code: `make x`, a command line starting with make, or after &&
    used = named(r"(?:`|(?m:^)\s*|&& )make ([a-z][a-z-]+)")
    assert used and {(page, t) for page, t in used if t not in TARGETS} == set()


def test_every_config_key_named_exists():
    keys = named(r"(?:--set |`|ARGS=\"--set )([a-z_]+\.[a-z_.]+)(?==)")
    unknown = {
        (page, key)
        for page, key in keys
        if key.split(".")[0] in SECTIONS
        and not any(k == key or k.startswith(key + ".") for k in SCHEMA)
        and not key.startswith(("task.", "synth.prevalence", "train.sample_weights"))
    }
    assert keys and unknown == set()


def test_every_cli_command_named_exists():
    used = named(r"python -m competition ([a-z][a-z-]+)")
    assert {(page, c) for page, c in used if c not in COMMANDS} == set()


def test_the_readme_links_only_to_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)]+)\)", (REPO / "README.md").read_text())
    assert links and [link for link in links if not (REPO / link).is_file()] == []
