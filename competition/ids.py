"""Image IDs that are safe to put in a path: plain file names, so that an ID
from a CSV can never name a file outside the data folder."""

from __future__ import annotations

import re

from competition.errors import KitError

# A file name, not a path: no separators, no leading dot (so no `..`), no NUL.
# Up to 200 characters: a unit's slice joins its folder and file names (two UIDs).
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


class UnsafeIdError(KitError, ValueError):
    """An image ID (or a path field) that could name a file outside the data folder."""


def check_image_id(image_id: str) -> str:
    check_image_ids([image_id], "image ID")
    return image_id


def check_image_ids(image_ids, origin: str) -> None:
    """Every ID is a plain file name; the error names the bad ones (and
    `origin`, the file or table they came from)."""
    bad = [i for i in image_ids if not (isinstance(i, str) and SAFE_ID.fullmatch(i))]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UnsafeIdError(
            f"{origin}: image IDs must be plain file names (letters, digits, '_', '.', '-'; no "
            f"path separators, no leading dot). Received: {', '.join(map(repr, bad[:5]))}{more}"
        )
