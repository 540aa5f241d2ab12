"""The ``nodes`` fixture: several nodes of one cluster, on every cluster backend.

``memory``: nodes of one process sharing a ``MemoryNetwork``; ``redis``: one
``RedisCluster`` per node sharing the session's Redis server, each test in its
own key namespace. A node records the messages it receives and the claims it
loses, so tests can await them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from scribeline.cluster import Cluster, Signals
from scribeline.cluster.memory import MemoryCluster, MemoryNetwork

__all__ = ["CLUSTER_BACKENDS", "Node", "Nodes", "cluster_url", "eventually", "nodes"]

CLUSTER_BACKENDS = ["memory", "redis"]


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``check()`` holds (polled: the condition has no event to await)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - state of another process, no event
            await asyncio.sleep(0.02)


@dataclass
class Node:
    """One started node and what reached it."""

    cluster: Cluster
    inbox: list[bytes] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.cluster.node_id


class Nodes:
    """Makes started nodes that share one backend; closes them all at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = f"t{uuid.uuid4().hex[:10]}"
        self._network = MemoryNetwork()
        self._made: list[Cluster] = []

    def make(self, *, lease: float = 60.0, renew: float = 20.0, timeout: float = 1.0) -> Cluster:
        """A node, not started."""
        cluster: Cluster
        if self.url == "memory://":
            cluster = MemoryCluster(self._network, lease=lease, renew=renew)
        else:
            from scribeline.cluster.redis import RedisCluster

            cluster = RedisCluster(
                self.url, lease=lease, renew=renew, timeout=timeout, namespace=self.namespace
            )
        self._made.append(cluster)
        return cluster

    async def node(self, *, lease: float = 60.0, renew: float = 20.0) -> Node:
        """A started node."""
        node = Node(self.make(lease=lease, renew=renew))
        await node.cluster.start(node.inbox.append)
        return node

    async def signals(self) -> Signals:
        """A started node whose messages go through ``Signals``."""
        signals = Signals(self.make())
        await signals.cluster.start(signals.deliver)
        return signals

    async def close(self) -> None:
        for cluster in self._made:
            await cluster.close()


@pytest.fixture(params=CLUSTER_BACKENDS)
def cluster_url(request: pytest.FixtureRequest) -> str:
    """The URL of every cluster backend in turn (Redis: the session's server)."""
    if request.param == "memory":
        return "memory://"
    server = request.getfixturevalue("redis_server")
    return str(server.url)


@pytest.fixture
async def nodes(cluster_url: str) -> AsyncIterator[Nodes]:
    made = Nodes(cluster_url)
    try:
        yield made
    finally:
        await made.close()
