"""Cluster-wide slots, claims, turns and messages between nodes, chosen by URL.

``memory://`` is one node alone (a single process); ``redis://`` and
``rediss://`` share state through Redis (redis-py is imported only then, so it
stays an optional dependency).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from scribeline.cluster.base import Cluster, ClusterDegraded, OnLost, OnMessage, new_node_id
from scribeline.cluster.signals import Signals

__all__ = [
    "Cluster",
    "ClusterDegraded",
    "OnLost",
    "OnMessage",
    "Signals",
    "announce",
    "check",
    "new_node_id",
    "open_cluster",
]


def open_cluster(
    url: str,
    *,
    lease: float = 60.0,
    renew: float = 20.0,
    timeout: float = 1.0,
    probe: float | None = None,
    node_id: str | None = None,
    namespace: str = "sl",
) -> Cluster:
    """The cluster for ``url`` (not started): leases of ``lease`` seconds renewed
    every ``renew``; Redis answers within ``timeout`` or the node degrades; an
    idle pub/sub connection is probed after ``probe`` seconds. Redis keys and
    channels start with ``namespace``."""
    if not 0 < renew < lease:
        raise ValueError("the cluster's renew interval must be shorter than its lease")
    if url.startswith("memory://"):
        from scribeline.cluster.memory import MemoryCluster

        return MemoryCluster(node_id=node_id)  # alone: its leases need no expiry
    if url.startswith(("redis://", "rediss://", "unix://")):
        from scribeline.cluster.redis import RedisCluster

        return RedisCluster(
            url,
            node_id=node_id,
            lease=lease,
            renew=renew,
            timeout=timeout,
            probe=probe,
            namespace=namespace,
        )
    raise ValueError(f"Unsupported cluster URL scheme: {url.split(':', 1)[0]!r}")


async def announce(
    url: str, kind: str, data: dict[str, Any], *, wait: float = 1.0, namespace: str = "sl"
) -> None:
    """Send every running node a ``Signals`` notice from outside a server (the admin
    CLI after it revoked a key), waiting at most ``wait`` seconds for Redis. Best
    effort: a node that misses it catches up when its cache entry expires.
    Nothing to do for memory:// (no other process shares its state)."""
    if url.startswith("memory://"):
        return
    cluster = open_cluster(url, timeout=wait, namespace=namespace)
    try:
        await cluster.send(None, orjson.dumps({"k": kind, "d": data}))
    finally:
        await cluster.close()


async def check(cluster: Cluster, within: float) -> str | None:
    """The cluster's ``/readyz`` check: None when its state is shared as it should
    be, else ``"degraded: <why>"`` (never an error: a node that cannot reach
    Redis still serves, with node-local limits)."""
    try:
        async with asyncio.timeout(within):
            await cluster.ping()
    except ClusterDegraded as exc:
        return f"degraded: {exc}"
    except TimeoutError:
        return "degraded: timed out"
    return None
