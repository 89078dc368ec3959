"""One writer per output. A command that writes a fold, a cache split or an
experiment's predictions holds an exclusive lock on that folder
(`fcntl.flock` on `<folder>/.lock`): a second run on the same folder is
refused, naming the first one's host and PID. The kernel drops the lock with
the process however it ends, kill -9 included, so a lock never outlives its
holder and there is nothing stale to take over. Re-entrant within a process
(the cluster's fold task holds its fold's lock around the training that
takes it again)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from competition.errors import KitError

LOCK = ".lock"
_HELD: set[str] = set()


class BusyError(KitError, RuntimeError):
    """Another run is writing the same folder."""


def _holder(fd: int) -> str:
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found.get("since", 0)))
    return f"pid {found.get('pid')} on {found.get('host')}, since {since}: {found.get('command')}"


@contextlib.contextmanager
def exclusive(folder: str | Path, what: str, name: str = LOCK) -> Iterator[None]:
    """Hold `folder`'s lock (the file `name` in it) for the block, or raise
    BusyError naming the holder."""
    folder = Path(folder)
    key = str((folder / name).resolve())
    if key in _HELD:  # this process already holds it
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"{what} ({folder}) is being written by another run ({_holder(fd)}). Wait for "
                "it to finish or stop it; two runs writing one folder would mix their files."
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": " ".join(sys.argv)[:300],
        }
        try:  # who holds it, for the message of a refused run; the lock holds without it
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError:  # a full disk: the command's own writes will say so
            pass
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)  # closing the descriptor releases the lock
