"""Faults in a three-node cluster: nothing acknowledged is lost, nothing is shown twice.

Each test runs a writer posting through the nodes and followers subscribed
on different nodes, injects one fault mid-stream, and then asserts for every
follower that what it received is exactly the stored stream after where it
started (no gap, no duplicate, no reordering), and that every append the
writer saw acknowledged is stored. Each fault is repeated ``REPEAT`` times in
one cluster to give a race more than one chance to show.

The cluster here has its own PostgreSQL and Redis (they are restarted), a
short broker probe and position check (so a lost tail or a half-open broker
socket is noticed within a second or two rather than tens of seconds).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.e2e.cluster import Cluster, running_cluster
from tests.e2e.followers import (
    Follower,
    PipelinedWriter,
    Writer,
    acked_at_least,
    assert_exactly_once,
    stored_seqs,
)
from tests.faults import TcpProxy
from tests.integration.helpers import Api, Tenant, new_sid, open_live, read_until_seq, transcript
from tests.services import (
    Postgres,
    Redis,
    running_postgres,
    running_redis,
)

REPEAT = int(os.environ.get("SCRIBELINE_FAULT_REPEAT", "3"))
EVENTS = 120
FAULT_ENV = {
    "SCRIBELINE_BROKER_PROBE_INTERVAL": "0.5",
    "SCRIBELINE_POSITION_CHECK_INTERVAL": "1.0",
}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def fault_postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def fault_redis() -> Iterator[Redis]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, fault_postgres: Postgres, fault_redis: Redis
) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("faults"),
        fault_postgres.create_database(),
        fault_redis.url,
        env=FAULT_ENV,
    ) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def tenant(cluster: Cluster) -> Tenant:
    return cluster.create_tenant("faults")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def run_with_fault(
    cluster: Cluster,
    tenant: Tenant,
    http: aiohttp.ClientSession,
    postgres: Postgres,
    fault: object,
) -> tuple[list[Writer | PipelinedWriter], list[Follower]]:
    """Two calls written concurrently with the fault: one through REST (round-robin
    over the nodes), one through a pipelined producer WebSocket (moving to the
    next node when its connection fails). Once each writer has a third of its
    events acknowledged, ``fault()`` (sync or async) runs while they go on.
    Then every follower (one per node and call) is checked against PostgreSQL,
    and every acknowledged append must be stored."""
    rest = Api(http, cluster.nodes[0], tenant.rw)
    sids = [new_sid(), new_sid()]
    for sid in sids:
        await rest.create_call(sid)
    followers = [
        Follower(cluster, sid, tenant.read, start=n).begin() for sid in sids for n in range(3)
    ]
    for follower in followers:
        await follower.joined()
    writers: list[Writer | PipelinedWriter] = [
        Writer(cluster, http, sids[0], tenant.write),
        PipelinedWriter(cluster, sids[1], tenant.write, start=1),
    ]
    tasks = [
        asyncio.create_task(writers[0].write(EVENTS, pause=0.002)),  # type: ignore[call-arg]
        asyncio.create_task(writers[1].write(EVENTS)),
    ]
    for writer in writers:
        await acked_at_least(writer, EVENTS // 3)
    result = fault()  # type: ignore[operator]
    if asyncio.iscoroutine(result):
        await result
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for sid, writer in zip(sids, writers, strict=True):
        stored = stored_seqs(postgres, cluster.database, sid)
        assert set(writer.acked) <= set(stored), "an acknowledged append is not stored"
        assert len(writer.acked) >= EVENTS
        for follower in followers:
            if follower.sid == sid:
                assert_exactly_once(await follower.finish(stored[-1]), stored)
    return writers, followers


async def test_kill_9_of_a_node_mid_stream(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession, fault_postgres: Postgres
) -> None:
    """kill -9 of the node a follower is on: it resumes on another node with since;
    the writer's appends through the dead node are retried elsewhere."""
    for round_ in range(REPEAT):
        victim = round_ % 3

        def kill(victim: int = victim) -> None:
            os.kill(cluster.nodes[victim].pid, signal.SIGKILL)
            cluster.nodes[victim].proc.wait()  # type: ignore[union-attr]

        _, followers = await run_with_fault(cluster, tenant, http, fault_postgres, kill)
        for follower in followers[victim::3]:
            assert follower.connections >= 2, "a follower on the victim never reconnected"
        cluster.restart(victim)


async def test_redis_restarted_mid_stream(
    cluster: Cluster,
    tenant: Tenant,
    http: aiohttp.ClientSession,
    fault_postgres: Postgres,
    fault_redis: Redis,
) -> None:
    """Redis is killed and restarted empty: what was published meanwhile is lost by
    the broker and repaired from PostgreSQL by every node."""
    for _ in range(REPEAT):
        await run_with_fault(cluster, tenant, http, fault_postgres, fault_redis.restart)


async def test_pubsub_clients_killed_mid_stream(
    cluster: Cluster,
    tenant: Tenant,
    http: aiohttp.ClientSession,
    fault_postgres: Postgres,
    fault_redis: Redis,
) -> None:
    """``CLIENT KILL TYPE pubsub`` drops every node's subscription connection."""
    for _ in range(REPEAT):
        await run_with_fault(
            cluster,
            tenant,
            http,
            fault_postgres,
            lambda: fault_redis.command("CLIENT", "KILL", "TYPE", "pubsub"),
        )


async def test_postgres_crash_under_load(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession, fault_postgres: Postgres
) -> None:
    """PostgreSQL crashes (immediate stop) while both writers have appends in
    flight and comes back a second later: every acknowledged append is stored,
    every refused one was retried, and followers see the stored streams exactly."""

    async def crash() -> None:
        fault_postgres.stop("immediate")
        await asyncio.sleep(1.0)  # the length of the outage being simulated
        fault_postgres.start()

    writers, _ = await run_with_fault(cluster, tenant, http, fault_postgres, crash)
    assert sum(w.refused for w in writers) + sum(getattr(w, "reconnects", 0) for w in writers), (
        "the crash refused nothing: it did not happen under load"
    )


async def test_postgres_restarted_mid_stream(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession, fault_postgres: Postgres
) -> None:
    """PostgreSQL stops (a crash) while appends arrive: they are refused with a
    retryable 503 (never a false acknowledgement) until it is back."""
    sid = new_sid()
    rest = Api(http, cluster.nodes[0], tenant.rw)
    await rest.create_call(sid)
    before = await rest.post_transcripts(sid, [transcript(f"b{i}") for i in range(5)])
    fault_postgres.stop("immediate")
    try:
        resp = await rest.request(
            "POST", f"/v1/calls/{sid}/transcripts", json_body=transcript("while down")
        )
        assert resp.status == 503, resp.text
        assert resp.body["error"] == "storage_unavailable", resp.body
        assert resp.headers.get("Retry-After"), resp.headers
    finally:
        fault_postgres.start()

    async def accepted() -> list[int]:
        while True:
            resp = await rest.request(
                "POST", f"/v1/calls/{sid}/transcripts", json_body=[transcript("after")]
            )
            if resp.status == 201:
                return list(resp.body["seqs"])
            assert resp.status == 503, resp.text
            await asyncio.sleep(0.1)

    after = await asyncio.wait_for(accepted(), 30)
    stored = stored_seqs(fault_postgres, cluster.database, sid)
    assert [s for s in stored if s >= before[0]] == before + after, (
        "the refused append was stored, or a seq was skipped"
    )
    ws, _ = await open_live(cluster.nodes[1], sid, tenant.read)
    got = await read_until_seq(ws, after[-1])
    assert [m["seq"] for m in got] == stored
    await ws.close()


# --------------------------------------------------------------------------- half-open Redis

#: The nodes behind the blackholing proxy: quick probes and short Redis timeouts.
PROXIED_ENV = {
    "SCRIBELINE_BROKER_PROBE_INTERVAL": "0.5",
    "SCRIBELINE_BROKER_TIMEOUT": "1.0",
    # Longer than the module runs: the probe, never the periodic check, must act.
    "SCRIBELINE_POSITION_CHECK_INTERVAL": "600",
}


class ThreadedProxy:
    """A :class:`TcpProxy` on its own event loop in a thread, for the whole module
    (the nodes connect through it while tests run on their own loops)."""

    def __init__(self, upstream_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = TcpProxy(upstream_port)
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(10)

    def sever(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.sever)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.resume)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def proxy(fault_redis: Redis) -> Iterator[ThreadedProxy]:
    server = ThreadedProxy(fault_redis.port)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def proxied(
    tmp_path_factory: pytest.TempPathFactory, fault_postgres: Postgres, proxy: ThreadedProxy
) -> Iterator[Cluster]:
    """Three nodes whose only way to Redis is the proxy."""
    with running_cluster(
        tmp_path_factory.mktemp("proxied"),
        fault_postgres.create_database(),
        proxy.proxy.url(),
        env=PROXIED_ENV,
    ) as nodes:
        yield nodes


async def test_blackholed_redis_is_noticed_by_the_probe(
    proxied: Cluster,
    http: aiohttp.ClientSession,
    fault_postgres: Postgres,
    proxy: ThreadedProxy,
) -> None:
    """The path to Redis silently stops forwarding for 3 s, and the connections open
    then never forward again (sockets stay open: a dead NAT entry), while both
    writers go on: ingest keeps storing; each node's probe notices its dead
    subscription, reconnects once the path is back, and repairs from PostgreSQL,
    so followers get everything long before the periodic check (600 s here)
    could have helped. (With the probe off, this fails on the time bound.)"""
    tenant = proxied.create_tenant("halfopen")
    for _ in range(REPEAT):

        async def blackhole_for_a_while() -> None:
            proxy.sever()
            await asyncio.sleep(3.0)  # the outage being simulated lasts this long
            proxy.resume()

        started = time.monotonic()
        await run_with_fault(proxied, tenant, http, fault_postgres, blackhole_for_a_while)
        assert time.monotonic() - started < 15, "repair waited for the periodic check"
