"""Memory readings for the benchmarks and their tests (Linux /proc): what a
process holds itself, sampled while it runs, and its largest worker's peak."""

from __future__ import annotations

import threading
from pathlib import Path


def rss_anon_bytes(pid: int | str = "self") -> int:
    """Resident anonymous memory (`RssAnon`): what the process itself holds,
    not counting file pages it maps (a memory-mapped cache lives there)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/{pid}/status has no RssAnon line (not Linux?)")


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def own_bytes() -> int:
    """What the process holds itself: anonymous and shared memory. Pages of
    a memory-mapped file it reads are the kernel's page cache (evictable),
    not the process's."""
    fields = ("RssAnon:", "RssShmem:")
    lines = Path("/proc/self/status").read_text().splitlines()
    return sum(int(line.split()[1]) * 1024 for line in lines if line.startswith(fields))


class PeakSampler(threading.Thread):
    """The largest own_bytes() seen, sampled every 50 ms while the stage runs
    (more often slows the stage it measures)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = own_bytes(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, own_bytes())

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, own_bytes())


def workers_peak() -> int:
    """The largest worker process's peak resident size (they map no files)."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
