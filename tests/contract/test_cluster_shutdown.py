"""A node's slots under bursts, cancellations and a clean stop.

A node on SIGTERM closes all its connections at once: hundreds of releases in
flight together, some of them cancelled with their handlers, then
``Cluster.close``. None of its slots may stay behind for another node to
trip over until the lease runs out, and a burst of connections must be
counted cluster-wide, not degrade the node. The first tests run on every
backend; the rest need Redis (its pool, its round trips, a pause).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from tests.contract.cluster_backends import *  # noqa: F403 - the fixtures
from tests.contract.cluster_backends import Node, Nodes
from tests.services import Redis, running_redis

#: Slots one node holds on one call: more than redis-py's default pool of 100.
MANY = 400


async def test_a_clean_stop_gives_back_every_slot_even_with_releases_cancelled(
    nodes: Nodes,
) -> None:
    """A node holding many slots and claims starts releasing them all at once, half
    of the releases are cancelled (handlers cancelled at shutdown), and it closes
    while the rest are in flight: another node then admits up to the limit at once
    and can take every claim."""
    a, b = await nodes.node(), await nodes.node()
    for i in range(MANY):  # one by one: a burst is the next test's
        assert await a.cluster.acquire("call:1", MANY, f"m{i}")
    for i in range(5):
        await a.cluster.claim(f"producer:{i}", f"p{i}", lambda: None)
    releases = [
        asyncio.ensure_future(a.cluster.release("call:1", f"m{i}")) for i in range(MANY - 50)
    ]
    await asyncio.sleep(0)  # every release has started
    for task in releases[::2]:
        task.cancel()
    await a.cluster.close()
    await asyncio.gather(*releases, return_exceptions=True)
    admitted = [await b.cluster.acquire("call:1", MANY, f"n{i}") for i in range(MANY)]
    assert sum(admitted) == MANY, f"{MANY - sum(admitted)} of the stopped node's slots remain"
    for i in range(5):
        assert await b.cluster.owner(f"producer:{i}") is None


async def test_a_burst_of_acquires_is_limited_cluster_wide(nodes: Nodes) -> None:
    """Hundreds of connections asking for a slot at once (a failed node's clients
    reconnecting here) are admitted up to the cluster-wide limit exactly, and the
    node stays healthy: a burst is not an outage."""
    a, b = await nodes.node(), await nodes.node()
    for i in range(50):
        assert await b.cluster.acquire("call:2", 250, f"b{i}")
    admitted = await asyncio.gather(
        *(a.cluster.acquire("call:2", 250, f"a{i}") for i in range(300))
    )
    assert sum(admitted) == 200
    await a.cluster.ping()


# -- Redis only: round trips cut short, and a pause ------------------------------


@pytest.fixture
def own_redis() -> Iterator[Redis]:
    """A Redis server this test may pause."""
    with running_redis() as server:
        yield server


def _members(server: Redis, key: str) -> list[str]:
    return server.command("ZRANGE", key, "0", "-1").split()


async def test_an_acquire_or_release_cancelled_anywhere_leaves_no_slot(
    redis_server: Redis,
) -> None:
    """An acquire or a release cancelled at any point of its round trip (before it is
    sent, while Redis runs it, after it answered) leaves no slot in Redis once the
    node has closed: none is left to its lease."""
    made = Nodes(redis_server.url)
    try:
        a = Node(made.make(lease=60, renew=30))
        await a.cluster.start(a.inbox.append)
        keys = []
        for step in range(40):
            key = f"call:{step}"
            keys.append(f"{made.namespace}:lim:{{{key}}}")
            acquire = asyncio.ensure_future(a.cluster.acquire(key, 5, "x"))
            for _ in range(step):
                await asyncio.sleep(0)  # let the round trip progress to this point
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if await acquire:  # it finished before the cancellation: held
                    await a.cluster.release(key, "x")
            assert await a.cluster.acquire(key, 5, "y")
            release = asyncio.ensure_future(a.cluster.release(key, "y"))
            for _ in range(step):
                await asyncio.sleep(0)
            release.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await release
        await a.cluster.close()  # gives back what it holds (a release cancelled unstarted)
        assert [m for k in keys for m in _members(redis_server, k)] == []
    finally:
        await made.close()


async def test_close_while_degraded_gives_back_what_redis_missed(own_redis: Redis) -> None:
    """A node whose release timed out (Redis paused: degraded, the release remembered)
    and that stops before its next retry still gives back, on close, both what it
    holds and what Redis did not hear of, now that Redis answers."""
    made = Nodes(own_redis.url)
    try:
        a = Node(made.make(lease=60, renew=30, timeout=0.2))
        await a.cluster.start(a.inbox.append)
        assert await a.cluster.acquire("call:1", 5, "a1")
        assert await a.cluster.acquire("call:1", 5, "a2")
        await a.cluster.claim("producer:1", "p", lambda: None)
        own_redis.command("CLIENT", "PAUSE", "10000", "WRITE")  # scripts wait, UNPAUSE does not
        await a.cluster.release("call:1", "a1")  # times out: degraded, remembered
        assert a.cluster._down is not None  # type: ignore[attr-defined]
        own_redis.command("CLIENT", "UNPAUSE")
        await a.cluster.close()
        assert _members(own_redis, f"{made.namespace}:lim:{{call:1}}") == []
        assert own_redis.command("EXISTS", f"{made.namespace}:own:{{producer:1}}") == "0"
    finally:
        await made.close()


async def test_slots_work_after_redis_forgets_its_scripts(redis_server: Redis) -> None:
    """After Redis drops its scripts (a restart, SCRIPT FLUSH), slots are taken and
    given back as before, one at a time or in a burst."""
    made = Nodes(redis_server.url)
    try:
        a = Node(made.make())
        await a.cluster.start(a.inbox.append)
        key = f"{made.namespace}:lim:{{call:1}}"
        redis_server.command("SCRIPT", "FLUSH")
        assert await a.cluster.acquire("call:1", 3, "m0")
        redis_server.command("SCRIPT", "FLUSH")
        admitted = await asyncio.gather(
            *(a.cluster.acquire("call:1", 3, f"m{i}") for i in range(5))
        )
        assert admitted == [True, True, True, False, False]
        redis_server.command("SCRIPT", "FLUSH")
        await asyncio.gather(*(a.cluster.release("call:1", f"m{i}") for i in range(3)))
        assert _members(redis_server, key) == []
        await a.cluster.ping()
    finally:
        await made.close()
