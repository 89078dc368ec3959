"""The machine a benchmark ran on: CPU, cores, memory, Python (`host`, read
without Keras), and the Keras backend with its devices (`machine`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def host() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
    }


def machine() -> dict:
    from competition.training import devices

    return {
        **host(),
        "keras": devices.describe(),
        "accelerators": len(devices.accelerators()),
    }
