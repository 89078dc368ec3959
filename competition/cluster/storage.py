"""Shared storage is a requirement: every node must see the data and runs
folders the driver sees. Before work is submitted the driver writes a
marker with a fresh token into each folder and a task on every alive node
reads them back; a node that does not see them all stops the command."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from competition.errors import KitError
from competition.fileio import write_text_atomic

MARKER = ".cluster-marker-{token}"


def write_markers(folders: list[Path]) -> dict[str, str]:
    """A marker (path -> its token) in each folder, made absolute."""
    markers = {}
    for folder in dict.fromkeys(Path(f).resolve() for f in folders):
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        path = folder / MARKER.format(token=token)
        write_text_atomic(path, token)
        markers[str(path)] = token
    return markers


def remove_markers(markers: dict[str, str]) -> None:
    for path in markers:
        Path(path).unlink(missing_ok=True)


def check_shared_storage(ray, folders: list[Path], timeout: float = 120.0) -> list[dict]:
    """Every alive node reads the markers; returns what each node saw, or
    raises KitError naming the nodes and the folders they miss."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from competition.cluster.session import alive_nodes
    from competition.cluster.tasks import probe_markers

    markers = write_markers(folders)
    try:
        probe = ray.remote(probe_markers)
        nodes = [node["NodeID"] for node in alive_nodes(ray)]
        refs = [
            probe.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            ).remote(markers, os.getcwd())
            for node in nodes
        ]
        seen = ray.get(refs, timeout=timeout)
    finally:
        remove_markers(markers)
    blind = [s for s in seen if s["missing"]]
    if blind:
        lines = [
            f"- node {s['node'][:12]} ({s['host']}) does not see: "
            + ", ".join(str(Path(p).parent) for p in s["missing"])
            for s in blind
        ]
        raise KitError(
            "The cluster's nodes must share the data and runs folders (the same paths on a "
            "shared filesystem: NFS, a cloud file share), but\n"
            + "\n".join(lines)
            + "\nMount the shared filesystem at the same path on every node (or set data.root "
            "and runs_dir to a path that is shared), then run the command again. Nothing was "
            "submitted."
        )
    return seen
