"""The kit's messages as the docs quote them, checked against the source.

A quote is a backticked message in a table column that quotes the kit (the
README's "the kit says", faults.md's "reason recorded"); an output line is a
line of a ```text block (an example of what the kit prints). `...` stands
for anything. An output line is read loosely: it may come after other text
(a message inside another), and its values may be any words.
The source's messages are its string literals, f-strings and `+` chains of
them, and the Makefile's `$(error ...)` lines; a `{field}` (a `$(VAR)`)
stands for a value (a word, or words with a digit, a quote or a path in
them: "Fold 0"), any other operand for anything.
A quote is found when one source message can read as it does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ANY, VALUE = "\x00", "\x01"  # a quote's `...`; a source field
QUOTING_COLUMNS = re.compile(r"the kit says|reason|message", re.IGNORECASE)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --- the source's messages ------------------------------------------------------------------


def _pattern(node: ast.AST) -> str | None:
    """A string expression as text with VALUE / ANY for what it computes."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_pattern(v) if isinstance(v, ast.Constant) else VALUE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pattern(node.left), _pattern(node.right)
        if left is None and right is None:
            return None
        return (left if left is not None else ANY) + (right if right is not None else ANY)
    return None


def source_messages(repo: Path) -> list[str]:
    """The messages of the package's source and of the Makefile."""
    found = set()
    for line in (repo / "Makefile").read_text().splitlines():
        if "$(error " in line:
            text = line.split("$(error ", 1)[1].rstrip(")")
            found.add(_normal(re.sub(r"\$\(\w+\)", VALUE, text)))
    for path in sorted((repo / "competition").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            pattern = _pattern(node)
            text = re.sub(f"{VALUE}+", VALUE, _normal(pattern or ""))  # `{a}{b}`: one value
            if re.sub(f"[\\s{VALUE}{ANY}]", "", text):
                found.add(text)
    return sorted(found)


# --- the docs' quotes -----------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def output_lines(page: Path) -> list[str]:
    """The lines of `page`'s ```text blocks."""
    found, fenced = [], None
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = None if fenced is not None else line[3:].strip()
        elif fenced == "text" and line.strip() and line.strip() != "...":
            found.append(line.strip().removeprefix("error: "))
    return found


def quotes(page: Path) -> list[str]:
    """The messages `page` quotes in its tables (see the module)."""
    found, columns, fenced = [], None, None
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = None if fenced is not None else line[3:].strip()
            continue
        if fenced is not None:
            continue
        if not line.startswith("|"):
            columns = None
            continue
        cells = _cells(line)
        if columns is None:  # a table's header row
            columns = [i for i, cell in enumerate(cells) if QUOTING_COLUMNS.search(cell)]
            continue
        for i in columns:
            if i < len(cells):
                found += re.findall(r"`([^`]+)`", cells[i])
    return [quote.removeprefix("error: ") for quote in found]


# --- can one read as the other --------------------------------------------------------------


_MARKS = set("0123456789'\"/._=<>")  # what a value with spaces in it shows ("fold 2 of 'x'")


def _value_read(value: int, char: str) -> int | None:
    """A value's state after reading `char` (None: a value cannot go on so):
    0 nothing read, 1 a word, 2 a word with a mark, 3 words, 4 words with a mark."""
    if char == " ":
        return None if value == 0 else (4 if value in (2, 4) else 3)
    marked = char in _MARKS
    if value in (0, 1, 2):
        return 2 if marked or value == 2 else 1
    return 4 if marked or value == 4 else 3


def readable_as(quote: str, message: str, loose: bool = False) -> bool:
    """Is there a text that `quote` (its `...` anything) and `message` (its
    fields values, its other parts anything) both describe, with at least
    8 characters of the quote (fewer when the message has fewer of its own)
    read in the message's own words? The quote may be any part of the
    message; the message starts where it starts. A value does not start
    with a space, and one of several words shows a mark of a value (a digit,
    a quote, a path): "Cache of train" is words, not a value."""
    a = ANY + _normal(quote).replace("...", ANY) + ANY
    b = ANY + message if loose else message
    needed = min(8, len(re.sub(f"[\\s{ANY}{VALUE}]", "", b)))
    # (position in the quote, in the message, the value being read (see
    # _value_read), characters read in the message's words, up to `needed`)
    seen, todo = set(), [(0, 0, 0, 0)]
    while todo:
        i, j, value, words = state = todo.pop()
        if state in seen:
            continue
        seen.add(state)
        if i == len(a) and j == len(b) and words >= needed:
            return True
        if value == 3 and not loose:  # words with no mark of a value: only more of them
            after = _value_read(value, a[i]) if i < len(a) and a[i] != ANY else None
            if after is not None:
                todo.append((i + 1, j, after, words))
            continue
        if i < len(a) and a[i] == ANY:
            todo.append((i + 1, j, 0, words))
            if j < len(b):
                todo.append((i, j + 1, 0, words))
        if j < len(b) and b[j] == ANY:
            todo.append((i, j + 1, 0, words))
            if i < len(a):
                todo.append((i + 1, j, 0, words))
        if j < len(b) and b[j] == VALUE:
            if value != 3 or loose:  # the value ends here
                todo.append((i, j + 1, 0, words))
            after = _value_read(value, a[i]) if i < len(a) and a[i] != ANY else None
            if after is not None:
                todo.append((i + 1, j, after, words))
        if i < len(a) and j < len(b) and a[i] == b[j] and a[i] not in (ANY, VALUE):
            todo.append((i + 1, j + 1, 0, min(needed, words + (a[i] != " "))))
    return False


def unfound(quotes_: list[str], messages: list[str], loose: bool = False) -> list[str]:
    """The quotes (output lines, when `loose`) no source message reads as.
    A quote needs a message of at least 3 characters of its own words."""
    if not loose:
        messages = [m for m in messages if len(re.sub(f"[\\s{VALUE}{ANY}]", "", m)) >= 3]
    own = {m: len(re.sub(f"[\\s{VALUE}{ANY}]", "", m)) for m in messages}
    missing = []
    for quote in quotes_:  # a message shares a word with the quote, or is mostly values
        words = set(re.findall(r"[A-Za-z_]{5,}", quote))
        candidates = [m for m in messages if own[m] < 8 or not words or any(w in m for w in words)]
        if not any(readable_as(quote, m, loose) for m in candidates):
            missing.append(quote)
    return missing
