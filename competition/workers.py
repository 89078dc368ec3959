"""Parallel workers for the kit's CPU-bound loops (header scans, synthetic
data, caches): how many, and a process pool that cannot outlive its job."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def worker_count(requested: int) -> int:
    """`0` means every core this process may use."""
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_pool(workers: int, initializer=None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """A process pool whose workers die with the process that started them:
    after a `kill -9` of a long job no idle worker is left holding memory."""
    return ProcessPoolExecutor(
        workers, initializer=_start_worker, initargs=(os.getpid(), initializer, initargs)
    )


def _start_worker(parent: int, initializer, initargs: tuple) -> None:
    _die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent exits (prctl PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
