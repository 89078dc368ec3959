"""Who is training a fold: each attempt records its owner (node, host,
process, attempt number, a token) in fold<k>/owner.json when it starts, and
checks the record before each write (epoch end, final metrics). An attempt
that Ray gave up on but that still runs (a node cut off, then back) finds a
newer token there and stops without writing over the newer attempt's work.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from competition.errors import KitError
from competition.fileio import write_text_atomic

OWNER = "owner.json"


def read_owner(folder: Path) -> dict:
    path = Path(folder) / OWNER
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass(frozen=True)
class Owner:
    folder: str
    token: str
    attempt: int
    node: str
    host: str
    pid: int

    def check(self) -> None:
        """Raise KitError unless this attempt still owns the folder."""
        found = read_owner(Path(self.folder))
        if found.get("token") != self.token:
            raise KitError(
                f"{self.folder} now belongs to attempt {found.get('attempt')} (node "
                f"{found.get('node')}, host {found.get('host')}, pid {found.get('pid')}); "
                f"attempt {self.attempt} (pid {self.pid}) stops without writing."
            )


def claim(folder: Path, node: str, process: dict | None = None) -> Owner:
    """Take the fold folder for this process: the attempt after the last
    recorded one. `process`: what else to record (the devices and threads
    the process was given)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    attempt = int(read_owner(folder).get("attempt", 0)) + 1
    owner = Owner(str(folder), uuid.uuid4().hex, attempt, node, socket.gethostname(), os.getpid())
    record = {**asdict(owner), **(process or {})}
    write_text_atomic(folder / OWNER, json.dumps(record, indent=2))
    return owner
