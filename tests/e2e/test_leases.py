"""Cluster-wide state outlives its holders only as long as a lease.

Two nodes with a 2 s lease and two connections per call: a crashed node's
slots free themselves; with Redis down the nodes keep serving on per-node
limits, say so on /readyz, and return to ready when Redis is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.cluster import Cluster, running_cluster
from tests.integration.helpers import (
    Api,
    Tenant,
    connect_live,
    expect_refusal,
    new_sid,
    open_live,
    recv_json,
    transcript,
)
from tests.services import Postgres, Redis, running_redis

LEASE = 2.0
ENV = {
    "SCRIBELINE_CLUSTER_LEASE": str(LEASE),
    "SCRIBELINE_CLUSTER_RENEW_INTERVAL": "0.5",
    "SCRIBELINE_MAX_CONNECTIONS_PER_CALL": "2",
    "SCRIBELINE_BROKER_PROBE_INTERVAL": "0.5",
    "SCRIBELINE_BROKER_TIMEOUT": "1.0",
}


@pytest.fixture(scope="module")
def lease_redis() -> Iterator[Redis]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres, lease_redis: Redis
) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("leases"),
        postgres.create_database(),
        lease_redis.url,
        size=2,
        env=ENV,
    ) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def tenant(cluster: Cluster) -> Tenant:
    return cluster.create_tenant("leases")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def admitted_within(cluster: Cluster, node: int, sid: str, key: str, within: float) -> Any:
    """Connect to ``node`` until it admits a subscriber (refusals before are expected)."""

    async def attempt() -> Any:
        while True:
            ws = await connect_live(cluster.nodes[node], sid, key)
            if (await recv_json(ws)).get("type") == "connection_established":
                return ws
            await ws.close()
            await asyncio.sleep(0.1)  # retrying a refused connect, as a client would

    return await asyncio.wait_for(attempt(), within)


async def test_a_crashed_nodes_slots_free_themselves_within_the_lease(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """Node B holds both of a call's slots; node A refuses a third; after kill -9 of
    B, A admits new subscribers within the lease (plus a renewal)."""
    sid = new_sid()
    await Api(http, cluster.nodes[0], tenant.rw).create_call(sid)
    held = [(await open_live(cluster.nodes[1], sid, tenant.read))[0] for _ in range(2)]
    await expect_refusal(cluster.nodes[0], f"/live-transcript/{sid}", tenant.read)
    os.kill(cluster.nodes[1].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    cluster.nodes[1].proc.wait()  # type: ignore[union-attr]
    try:
        ws = await admitted_within(cluster, 0, sid, tenant.read, LEASE + 3)
        assert time.monotonic() - killed_at <= LEASE + 3
        await ws.close()
    finally:
        for stale in held:
            stale.transport.abort()
        cluster.restart(1)  # whatever happened, the next test gets two nodes


async def test_with_redis_down_nodes_degrade_and_keep_serving(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession, lease_redis: Redis
) -> None:
    """Redis stops: /readyz answers 200 "degraded" on every node, ingest still stores
    and acknowledges, each node admits subscribers up to its own limit; when Redis
    is back every node is ready again."""
    sid = new_sid()
    rest = Api(http, cluster.nodes[0], tenant.rw)
    await rest.create_call(sid)
    lease_redis.stop()
    try:

        async def degraded(node: int) -> dict[str, Any]:
            while True:
                resp = await Api(http, cluster.nodes[node], None).request("GET", "/readyz")
                if resp.body and resp.body.get("status") == "degraded":
                    assert resp.status == 200, resp.text
                    return dict(resp.body)
                await asyncio.sleep(0.1)  # polling another process's view of Redis

        for node in range(2):
            await asyncio.wait_for(degraded(node), 10)
        seq = await rest.post_transcript(sid, transcript("stored while Redis is down"))
        per_node = [(await open_live(cluster.nodes[n], sid, tenant.read))[0] for n in (0, 1)]
        for ws in per_node:
            got = await recv_json(ws)
            assert got["seq"] <= seq
    finally:
        lease_redis.start()

    async def ready(node: int) -> None:
        while True:
            resp = await Api(http, cluster.nodes[node], None).request("GET", "/readyz")
            if resp.status == 200 and resp.body.get("status") == "ready":
                return
            await asyncio.sleep(0.1)  # polling another process's view of Redis

    for node in range(2):
        await asyncio.wait_for(ready(node), 15)
    for ws in per_node:
        await ws.close()
