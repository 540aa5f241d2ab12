"""Webhooks on two nodes sharing PostgreSQL and Redis: every node delivers, yet
each event has one attempt in flight at a time, each call's events arrive in
order, and a delivery whose node is killed mid-attempt (SIGKILL, the receiver
holding the request) is sent by the other node once its lease has expired."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.e2e.cluster import Cluster, running_cluster
from tests.integration.helpers import Api, ServerProcess, new_sid, transcript
from tests.integration.webhook_receiver import Received, Receiver
from tests.services import Postgres, running_redis

LEASE = 4.0
ENV = {
    "SCRIBELINE_WEBHOOK_ALLOW_PRIVATE": "true",
    "SCRIBELINE_WEBHOOK_LEASE": str(LEASE),
    "SCRIBELINE_WEBHOOK_TIMEOUT": "2",
    "SCRIBELINE_WEBHOOK_BACKOFF": "0.05",
    "SCRIBELINE_WEBHOOK_POLL_INTERVAL": "0.1",
}


@pytest.fixture(scope="module")
def hooks_cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres
) -> Iterator[Cluster]:
    with (
        running_redis() as redis,
        running_cluster(
            tmp_path_factory.mktemp("hooks"), postgres.create_database(), redis.url, 2, ENV
        ) as cluster,
    ):
        yield cluster


@pytest.fixture(scope="module")
def admin(hooks_cluster: Cluster) -> str:
    hooks_cluster.nodes[0].cli("orgs", "create", "hooks")
    return hooks_cluster.nodes[0].create_key("hooks", "admin")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.close()


async def add_hook(api: Api, url: str) -> int:
    body = {"url": url, "events": ["transcript.final"]}
    resp = await api.request("POST", "/v1/webhooks", json_body=body)
    assert resp.status == 201, resp.text
    hook_id: int = resp.body["id"]
    return hook_id


def sender_of(got: Received, nodes: list[ServerProcess]) -> int:
    """Which node sent ``got`` (by the port its connection came from)."""
    for number, node in enumerate(nodes):
        if node.proc is None or node.proc.poll() is not None:
            continue
        for conn in psutil.Process(node.pid).net_connections("tcp"):
            if conn.laddr and conn.laddr.port == got.peer_port:
                return number
    raise AssertionError("no node holds the connection")


async def test_one_attempt_in_flight_per_event_and_call_order_across_nodes(
    http: aiohttp.ClientSession, hooks_cluster: Cluster, admin: str, receiver: Receiver
) -> None:
    """Events of twelve calls appended through both nodes: each arrives exactly
    once, each call's in seq order, never two of one call at once, though both
    nodes deliver."""
    nodes = hooks_cluster.nodes
    api = [Api(http, node, admin) for node in nodes]
    receiver.answer("/all", work=0.01)  # a receiver that takes a moment per event
    hook_id = await add_hook(api[0], receiver.url("/all"))
    sids = [new_sid() for _ in range(12)]
    for n, sid in enumerate(sids):
        await api[n % 2].create_call(sid)
    for round_ in range(4):
        await asyncio.gather(
            *(api[(n + round_) % 2].post_transcript(sid, transcript(f"{round_}"))
              for n, sid in enumerate(sids))
        )  # fmt: skip
    records = await receiver.wait_for(lambda got: len(got) >= 48, within=30)
    assert len(records) == 48
    ids = [r.headers["webhook-id"] for r in records]
    assert len(set(ids)) == 48, "an event was sent twice"
    for sid in sids:
        mine = [r.json["data"] for r in records if r.json["data"]["call_sid"] == sid]
        assert [d["content"] for d in mine] == ["0", "1", "2", "3"]
        assert receiver.peak[sid] == 1, "two events of one call were in flight at once"
    assert {sender_of(r, nodes) for r in records} == {0, 1}, "one node sent everything"
    await api[0].request("DELETE", f"/v1/webhooks/{hook_id}")


async def test_a_node_killed_mid_delivery_is_replaced_after_the_lease(
    http: aiohttp.ClientSession, hooks_cluster: Cluster, admin: str, receiver: Receiver,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The receiver holds the first attempt; its node is killed with SIGKILL; the
    other node sends the same event (same ``webhook-id``) once the lease has
    expired, and the log shows it delivered on the second attempt."""
    nodes = hooks_cluster.nodes
    release = asyncio.Event()
    receiver.answer("/held", hold=release)
    api = Api(http, nodes[0], admin)
    hook_id = await add_hook(api, receiver.url("/held"))
    sid = new_sid()
    await api.create_call(sid)
    await api.post_transcript(sid, transcript("survives"))
    (first,) = await receiver.wait_for(lambda got: len(got) >= 1)
    victim = sender_of(first, nodes)
    survivor = 1 - victim
    nodes[victim].kill()  # SIGKILL, the attempt in flight
    release.set()
    records = await receiver.wait_for(lambda got: len(got) >= 2, within=LEASE + 15)
    second = records[1]
    assert sender_of(second, nodes) == survivor
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.json["data"]["content"] == "survives"
    assert second.at - first.at >= LEASE - 0.5  # not before the lease expired
    path = f"/v1/webhooks/{hook_id}/deliveries"
    survivor_api = Api(http, nodes[survivor], admin)
    async with asyncio.timeout(10):  # recorded just after the receiver answered
        while True:
            log = await survivor_api.request("GET", path)
            if log.body["deliveries"][0]["state"] == "delivered":
                break
            await asyncio.sleep(0.05)
    (delivery,) = log.body["deliveries"]
    # Two attempts; the killed node's never got to the log.
    assert delivery["attempts"] == 2
    assert [a["status"] for a in delivery["log"]] == [200]
