"""A node stopped with SIGTERM leaves none of its connection slots in Redis.

Two nodes on PostgreSQL and Redis with the default 60 s lease. A node holding
a call's every slot, more of them than redis-py's default connection pool
(100), is stopped cleanly: the other node must admit up to the limit at
once, not refuse with 1008 until the stopped node's leases run out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.cluster import Cluster, running_cluster
from tests.integration.helpers import (
    Api,
    ServerProcess,
    Tenant,
    expect_refusal,
    new_sid,
    open_live,
)
from tests.services import Postgres, Redis, running_redis

#: The per-call limit, and how many subscribers the stopped node holds.
LIMIT = 150


@pytest.fixture(scope="module")
def stop_redis() -> Iterator[Redis]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres, stop_redis: Redis
) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("clean-stop"),
        postgres.create_database(),
        stop_redis.url,
        size=2,
        env={"SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(LIMIT)},
    ) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def tenant(cluster: Cluster) -> Tenant:
    return cluster.create_tenant("clean-stop")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def subscribe(node: ServerProcess, sid: str, key: str, count: int) -> list[ClientConnection]:
    """``count`` admitted subscribers on ``node``, at most 20 connecting at a time."""
    gate = asyncio.Semaphore(20)

    async def one() -> ClientConnection:
        async with gate:
            return (await open_live(node, sid, key))[0]

    return list(await asyncio.gather(*(one() for _ in range(count))))


def slots_in_redis(server: Redis) -> int:
    """Connection slots and producer claims held in Redis, by any node."""
    keys = server.command("KEYS", "sl:lim:*").split()
    claims = server.command("KEYS", "sl:own:*").split()
    return sum(int(server.command("ZCARD", k) or 0) for k in keys) + len(claims)


async def test_after_sigterm_another_node_admits_up_to_the_limit_at_once(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession, stop_redis: Redis
) -> None:
    """Node B holds all of a call's slots (node A refuses one more); after SIGTERM
    of B, Redis holds no slot of it and A admits the limit's worth of subscribers
    at once."""
    sid = new_sid()
    await Api(http, cluster.nodes[0], tenant.rw).create_call(sid)
    held = await subscribe(cluster.nodes[1], sid, tenant.read, LIMIT)
    await expect_refusal(cluster.nodes[0], f"/live-transcript/{sid}", tenant.read)
    assert slots_in_redis(stop_redis) == LIMIT
    assert cluster.nodes[1].stop() == 0
    assert slots_in_redis(stop_redis) == 0
    admitted = await subscribe(cluster.nodes[0], sid, tenant.read, LIMIT)
    await asyncio.gather(*(ws.close() for ws in admitted + held))
