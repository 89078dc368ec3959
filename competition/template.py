"""The task's image path template, e.g. `{split_dir}/{patient_id}/{image_id}.dcm`:
filled from a CSV row, turned into a glob to list the files, and read back
(a file's path -> its fields). Every field it is filled with must be a
plain file name (competition.ids)."""

from __future__ import annotations

import re
import string

from competition.ids import check_image_ids


class ImageTemplate:
    def __init__(self, text: str, id_field: str):
        self.text, self.id_field = text, id_field
        parsed = list(string.Formatter().parse(text))
        self.fields = [name for _, name, _, _ in parsed if name is not None]

    def problem(self, require_id: bool = True) -> str | None:
        """What is wrong with the template, or None (`require_id`: it must
        name the ID field; a unit found by a header field or a CSV need not)."""
        if not self.text.startswith("{split_dir}/"):
            return "must start with {split_dir}/ (the split's image folder)"
        if require_id and self.id_field not in self.fields:
            return f"must name the image ID field {{{self.id_field}}}"
        if len(set(self.fields)) != len(self.fields) or any(
            not f.isidentifier() for f in self.fields
        ):
            return "must name each field once, as {column_name}"
        if "\\" in self.text or "/../" in self.text or "/./" in self.text:
            return "must be a plain relative path"
        return None

    @property
    def within_split(self) -> str:
        """The part of the template below the split's folder."""
        return self.text.removeprefix("{split_dir}/")

    @property
    def extra_fields(self) -> list[str]:
        """Fields other than the split folder and the image ID."""
        return [f for f in self.fields if f not in ("split_dir", self.id_field)]

    def glob(self) -> str:
        """A glob for the files below the split's folder."""
        return re.sub(r"\{[^}]*\}", "*", self.within_split)

    def parse(self, relative: str) -> dict[str, str] | None:
        """Fields of a path below the split's folder, or None if it does not fit."""
        pattern = ""
        for literal, name, _, _ in string.Formatter().parse(self.within_split):
            pattern += re.escape(literal)
            if name is not None:
                pattern += f"(?P<{name}>[^/]+?)"
        found = re.fullmatch(pattern, relative)
        return found.groupdict() if found else None

    def fill(self, split_dir: str, fields: dict[str, str]) -> str:
        for name in self.fields:
            if name != "split_dir":
                check_image_ids([fields[name]], f"path field {name!r}")
        values = {name: fields[name] for name in self.fields if name != "split_dir"}
        return self.text.format(split_dir=split_dir, **values)
