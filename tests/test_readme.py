"""The README and docs/ name only what exists: make targets, config keys,
CLI commands, the docs pages the README links to, and the kit's messages
they quote (troubleshooting rows, examples of output)."""

from __future__ import annotations

import re

from competition.cli import COMMANDS
from competition.config import SCHEMA

import doc_messages
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


def test_every_message_the_docs_quote_is_one_the_kit_says():
    messages = doc_messages.source_messages(REPO)
    quoted = {page.name: doc_messages.quotes(page) for page in PAGES}
    printed = {page.name: doc_messages.output_lines(page) for page in PAGES}
    assert sum(map(len, quoted.values())) >= 20  # the troubleshooting rows, faults' reasons
    assert sum(map(len, printed.values())) >= 15  # examples of output
    missing = {
        page: found for page, q in quoted.items() if (found := doc_messages.unfound(q, messages))
    }
    missing |= {
        f"{page} (output)": found
        for page, lines in printed.items()
        if (found := doc_messages.unfound(lines, messages, loose=True))
    }
    assert missing == {}


def test_the_message_check_tells_a_stale_quote_from_a_true_one():
    messages = [
        "The \x01 cache of \x01 images will not fit at \x01: \x00",
        "\x01 already trained (\x01); --force trains it again.",
        "\x01 (\x01) is being written by another run (\x01). Wait for it",
    ]
    found = doc_messages.unfound(
        [
            "Fold 0 already trained (...metrics.json); --force trains it again.",
            "fold 2 of experiment 'x' (...) is being written by another run (pid 7 on ...)",
            "The train cache of ... images will not fit at ...",
            "Cache of train: ... will not fit",  # a message the kit no longer says
            "Fold 0 already trained; --force retrains it.",
        ],
        messages,
    )
    assert found == [
        "Cache of train: ... will not fit",
        "Fold 0 already trained; --force retrains it.",
    ]
