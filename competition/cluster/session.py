"""The driver's connection to a Ray cluster; the only place the driver
imports Ray (an optional extra)."""

from __future__ import annotations

import os

from competition.errors import KitError


def import_ray():
    # Each fold's lines are its own: Ray's log de-duplication would hide one fold's epochs.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ImportError:
        raise KitError(
            'The cluster commands need Ray: pip install ".[cluster]" (make setup installs it).'
        ) from None
    return ray


def connect(address: str):
    """ray, connected to the running cluster at `address` (`auto`: the one
    this machine belongs to; HOST:PORT: the head node's GCS address)."""
    ray = import_ray()
    try:
        ray.init(address=address, log_to_driver=True, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise KitError(
            f"Cannot connect to a Ray cluster at {address!r}: {exc}\nStart one first "
            "(`ray start --head` on the head node, `ray start --address HEAD:6379` on each "
            "worker) and pass --address HEAD:6379, or --address auto on a node of it."
        ) from None
    return ray


def alive_nodes(ray) -> list[dict]:
    return [node for node in ray.nodes() if node.get("Alive")]


def check_fits(ray, cpus: float, gpus: float, what: str) -> None:
    """Refuse a request no alive node can ever hold (Ray would wait for it forever)."""
    nodes = alive_nodes(ray)
    fits = [
        node
        for node in nodes
        if node["Resources"].get("CPU", 0) >= cpus and node["Resources"].get("GPU", 0) >= gpus
    ]
    if not fits:
        sizes = sorted(
            {(n["Resources"].get("CPU", 0), n["Resources"].get("GPU", 0)) for n in nodes},
            reverse=True,
        )
        raise KitError(
            f"No node of the cluster can run {what} with {cpus:g} CPU(s) and {gpus:g} GPU(s): "
            f"its nodes have (CPUs, GPUs) {sizes}. Ask for less (--cpus-per-fold, "
            "--gpus-per-fold) or add a node that large."
        )
