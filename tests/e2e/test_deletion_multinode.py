"""Call deletion and retention on two nodes sharing PostgreSQL and Redis: a call
deleted through one node is gone on the other at once (its cached copy takes no
append, its subscriber is closed), and each expired call is swept by exactly
one node, whichever holds the sweep's lock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from scribeline.events import now_ms
from scribeline.storage import open_storage
from scribeline.storage.base_retention import DAY_MS
from tests.e2e.cluster import Cluster, running_cluster
from tests.integration.helpers import (
    RECV_TIMEOUT,
    Api,
    Tenant,
    collect_until_closed,
    new_sid,
    open_live,
    transcript,
)
from tests.old_calls import EVENTS_PER_CALL, ended_call, set_retention
from tests.services import Postgres, running_redis

SWEPT = re.compile(r"retention: org=(\d+) deleted calls=(\d+) events=(\d+) bots=(\d+)")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[Cluster]:
    """Two nodes that both sweep every 0.2 s."""
    root: Path = tmp_path_factory.mktemp("deletion-cluster")
    env = {"SCRIBELINE_RETENTION_INTERVAL": "0.2"}
    with (
        running_redis() as redis,
        running_cluster(root, postgres.create_database(), redis.url, 2, env) as cluster,
    ):
        yield cluster


@pytest.fixture(scope="module")
def tenant(nodes: Cluster) -> Tenant:
    return nodes.create_tenant("acme")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def test_a_call_deleted_on_one_node_is_gone_on_the_other(
    nodes: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """Node B has the call cached (it took an append) and a subscriber on it; the
    call is deleted through node A: B's subscriber is closed normally, and B
    refuses the next append as not found (the notice dropped its copy; a copy
    kept would be refused as ended, 409)."""
    node_a, node_b = nodes.nodes
    admin = await asyncio.to_thread(node_a.create_key, tenant.org, "admin")
    on_a, on_b = Api(http, node_a, tenant.rw), Api(http, node_b, tenant.rw)
    sid = new_sid()
    await on_a.create_call(sid)
    await on_b.post_transcript(sid, transcript("cached on B"))
    ws, _ = await open_live(node_b, sid, tenant.read)
    assert (await on_a.request("DELETE", f"/v1/calls/{sid}", key=admin)).status == 204
    messages, code = await collect_until_closed(ws)
    # The end (``canceled``) and the deletion's notice travel apart: the notice may
    # close the subscriber first, which is an end (1000) all the same.
    statuses = {m["status"] for m in messages if m.get("type") == "call_status"}
    assert statuses <= {"in-progress", "canceled"} and code == 1000
    refused = await on_b.request("POST", f"/v1/calls/{sid}/transcripts", json_body=transcript())
    assert refused.status == 404, refused.text
    assert (await on_b.request("GET", f"/v1/calls/{sid}")).status == 404


async def test_expired_calls_are_swept_once_by_one_node_at_a_time(
    nodes: Cluster, tenant: Tenant, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Forty calls that ended two days ago, with a retention of one day: both nodes
    sweep every 0.2 s, and the counts their logs report add up to exactly the
    calls and events there were (a call deleted twice, or by two nodes at once,
    would not add up)."""
    store = await open_storage(nodes.database_url, tmp_path)
    try:
        org = await store.get_org(tenant.org)
        assert org is not None
        calls = [
            await ended_call(store, org.id, new_sid(), now_ms() - 2 * DAY_MS - i) for i in range(40)
        ]
        api = Api(http, nodes.nodes[1], tenant.rw)
        await set_retention(store, org.id, 1)
        try:
            async with asyncio.timeout(RECV_TIMEOUT):
                # Other processes' timers: nothing to await but their effect.
                while (await api.request("GET", f"/v1/calls/{calls[-1].call_sid}")).status != 404:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        finally:
            await set_retention(store, org.id, None)
    finally:
        await store.close()
    for call in calls:
        assert (await api.request("GET", f"/v1/calls/{call.call_sid}")).status == 404
    swept = [
        tuple(map(int, m.groups()))
        for node in nodes.nodes
        for m in SWEPT.finditer(node.stderr_text())
        if int(m.group(1)) == org.id
    ]
    assert sum(s[1] for s in swept) == 40
    assert sum(s[2] for s in swept) == 40 * EVENTS_PER_CALL
