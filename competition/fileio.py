"""Atomic file writes: a reader never sees a half-written file under its final name.

Everything others read (tables, configs, checkpoints, caches, submissions) is
written to a temporary name in the same folder, flushed to disk, then renamed
over the final name; a crash or ENOSPC leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from competition.errors import KitError

_FULL = (errno.ENOSPC, errno.EDQUOT)


class NoSpaceError(KitError, OSError):
    """The disk (or quota) filled up while writing a file."""


def no_space_error(path: str | Path) -> NoSpaceError:
    error = NoSpaceError(
        f"No space left on the device writing {path}. Files are written under a temporary "
        "name and renamed only when complete, so nothing was half-written and the previous "
        f"file, if there was one, is intact. Free some space on {Path(path).parent} (or point the "
        "config's folder for it at another disk) and run the command again"
    )
    error.errno = errno.ENOSPC
    return error


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL


@contextlib.contextmanager
def disk_full_is_an_error(path: str | Path) -> Iterator[None]:
    """An OSError(ENOSPC / EDQUOT) inside becomes a NoSpaceError naming `path`."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, KitError):
            raise no_space_error(path) from exc
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` on success.
    `suffix` ends the temporary name (Keras wants `.keras` / `.weights.h5`).
    The temporary name holds the writer's host and PID, so temporary files
    left by a killed writer are recognised and removed by the next successful
    write into the same folder from the same host (on shared storage another
    node's PIDs mean nothing here)."""
    path = Path(path)
    with disk_full_is_an_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.{_host()}.{os.getpid()}-", suffix=suffix, dir=path.parent
        )
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; others read these files
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with disk_full_is_an_error(path):
            yield tmp
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    remove_orphans(path.parent)


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


# `.name.<host>.<pid>-<8 random>suffix`, as atomic_path names its temporary files
_TEMPORARY = re.compile(r"\.(.+)\.([A-Za-z0-9-]+)\.(\d+)-[a-z0-9_]{8}(\..+)?")


@functools.cache
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def remove_orphans(folder: Path) -> None:
    """Temporary files in `folder` whose writer process on this host no
    longer exists (killed mid-write): they are never read, only take space."""
    for candidate in Path(folder).glob(".*"):
        found = _TEMPORARY.fullmatch(candidate.name)
        if (
            found
            and found.group(2) == _host()
            and candidate.is_file()
            and not _alive(int(found.group(3)))
        ):
            candidate.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_csv_atomic(path: str | Path, frame: pd.DataFrame, **kwargs) -> Path:
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)
