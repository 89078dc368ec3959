"""Memory readings for the benchmark and its tests (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def rss_anon_bytes(pid: int | str = "self") -> int:
    """Resident anonymous memory (`RssAnon`): what the process itself holds,
    not counting file pages it maps (a memory-mapped cache lives there)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/{pid}/status has no RssAnon line (not Linux?)")
