"""Three nodes on one PostgreSQL and one Redis behave as one service.

Every test here crosses nodes: what goes in through one node comes out of
another, exactly once and in order, and the per-call limit counts every
node's connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.cluster import Cluster
from tests.integration.bot_helpers import create_bot, open_url, produce
from tests.integration.helpers import (
    Api,
    RawWebSocket,
    Tenant,
    connect_ingest,
    connect_live,
    expect_close,
    expect_refusal,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    send_json,
    transcript,
)
from tests.integration.test_campaigns import running_campaign, set_outcome
from tests.integration.test_event_stream import act, connect_events

EVENTS = 200


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def api(http: aiohttp.ClientSession, cluster: Cluster, tenant: Tenant, node: int) -> Api:
    return Api(http, cluster.nodes[node], tenant.rw)


async def produce_transcripts(ws: Any, count: int, first: int = 0) -> list[int]:
    """Send ``count`` transcripts without waiting, then read their acks in order."""
    for i in range(first, first + count):
        await send_json(ws, transcript(f"line {i}", segment_id=f"s{i}"))
    seqs = []
    for _ in range(count):
        ack = await recv_json(ws)
        assert ack.get("type") == "ack", ack
        seqs.append(ack["seq"])
    return seqs


async def test_producer_on_one_node_reaches_subscribers_on_every_node(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """A producer WebSocket on node B; subscribers on A, B and C each get every event
    exactly once, in seq order, with the content sent."""
    sid = new_sid()
    await api(http, cluster, tenant, 1).create_call(sid)
    subscribers = [(await open_live(node, sid, tenant.read))[0] for node in cluster.nodes]
    producer = await connect_ingest(cluster.nodes[1], sid, tenant.write)
    seqs = await produce_transcripts(producer, EVENTS)
    assert seqs == list(range(seqs[0], seqs[0] + EVENTS))
    for ws in subscribers:
        got = [m for m in await read_until_seq(ws, seqs[-1]) if m["seq"] >= seqs[0]]
        assert [m["seq"] for m in got] == seqs
        assert [m["data"]["content"] for m in got] == [f"line {i}" for i in range(EVENTS)]
        await ws.close()
    await producer.close()


async def test_resume_on_another_node(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """A subscriber that read part of a call on node A resumes with ``since`` on node C
    and gets exactly the rest: no gap, no duplicate."""
    sid = new_sid()
    rest = api(http, cluster, tenant, 0)
    await rest.create_call(sid)
    first = await rest.post_transcripts(sid, [transcript(f"a{i}") for i in range(20)])
    ws, _ = await open_live(cluster.nodes[0], sid, tenant.read)
    seen = [m["seq"] for m in await read_until_seq(ws, first[9])]
    await ws.close()
    second = await api(http, cluster, tenant, 1).post_transcripts(
        sid, [transcript(f"b{i}") for i in range(20)]
    )
    ws, _ = await open_live(cluster.nodes[2], sid, tenant.read, since=seen[-1])
    seen += [m["seq"] for m in await read_until_seq(ws, second[-1])]
    await ws.close()
    stored = first + second
    assert [s for s in seen if s in stored] == stored
    assert len(seen) == len(set(seen)), "a duplicate across the resume"


async def test_per_call_limit_holds_across_nodes(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """Ten subscribers spread over three nodes fill the call; the eleventh, on any
    node, is refused; once one leaves, a new one is accepted elsewhere."""
    sid = new_sid()
    await api(http, cluster, tenant, 0).create_call(sid)
    open_ = [(await open_live(cluster.nodes[i % 3], sid, tenant.read))[0] for i in range(10)]
    for node in cluster.nodes:
        msg, _ = await expect_refusal(node, f"/live-transcript/{sid}", tenant.read)
        assert msg["error"] == "rate_limited" or "limit" in msg["message"].lower(), msg
    await open_.pop(0).close()

    async def admitted() -> Any:
        # The slot is released when the server sees the close: retry until then.
        while True:
            ws = await connect_live(cluster.nodes[2], sid, tenant.read)
            first = await recv_json(ws)
            if first.get("type") == "connection_established":
                return ws
            await ws.close()
            await asyncio.sleep(0.05)

    open_.append(await asyncio.wait_for(admitted(), 10))
    for ws in open_:
        await ws.close()


async def test_event_stream_across_nodes(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """An event-stream subscriber on node C sees the transcripts and status changes
    posted through nodes A and B, each call's in order."""
    ws = await connect_events(cluster.nodes[2], tenant.read)
    await act(ws, "transcription", "*")
    await act(ws, "call_status", "*")
    sids = [new_sid(), new_sid()]
    for n, sid in enumerate(sids):
        rest = api(http, cluster, tenant, n)
        await rest.create_call(sid)
        await rest.post_transcripts(sid, [transcript(f"{n}-{i}") for i in range(5)])
        await rest.post_status(sid, "completed")
    contents: dict[str, list[str]] = {sid: [] for sid in sids}
    ended: set[str] = set()
    while ended != set(sids):
        msg = await recv_json(ws)
        sid = msg.get("call_sid") or msg.get("data", {}).get("call_sid")
        if msg.get("type") == "transcript" or msg.get("topic") == "transcription":
            contents[sid].append(msg["data"]["content"])
        elif "completed" in str(msg):
            ended.add(sid)
    for n, sid in enumerate(sids):
        assert contents[sid] == [f"{n}-{i}" for i in range(5)]
    await ws.close()


async def test_campaign_progress_across_nodes(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """Outcomes recorded through nodes A and B reach a campaign subscriber on node C,
    ending with campaign_completed carrying the final counters."""
    rest = api(http, cluster, tenant, 0)
    campaign, contacts = await running_campaign(rest, 4)
    url = f"{cluster.nodes[2].ws_base}/ws/campaigns/{campaign['id']}/progress?token={tenant.read}"
    ws = await open_url(url)
    for i, contact in enumerate(contacts):
        await set_outcome(
            api(http, cluster, tenant, i % 2), campaign["id"], contact["id"], "success"
        )
    while True:
        msg = await recv_json(ws)
        if msg.get("type") == "campaign_completed":
            break
    data = msg.get("data", msg)
    assert data["completed_contacts"] == 4, msg
    await ws.close()


async def test_bot_actions_and_stop_across_nodes(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """A read-write subscriber on node A sends a chat action that reaches the bot's
    producer on node B; a REST stop through node C asks that producer to stop, it
    stores its own stop, and C answers with the bot finished for the producer's
    reason; a second producer on C replaces a producer on B."""
    bot = await create_bot(api(http, cluster, tenant, 0))
    on = [node.ws_base for node in cluster.nodes]
    producer = await open_url(_on(bot["producer_url"], on[1]))
    await produce(producer, "start", {})
    subscriber = await open_url(_on(bot["websocket_url"], on[0]))
    await send_json(subscriber, {"action": "chat-message", "data": {"content": "hello"}})
    action = await recv_json(producer)
    assert action.get("action") == "chat-message", action

    rest = api(http, cluster, tenant, 2)
    stopping = asyncio.create_task(rest.request("POST", f"/v1/bots/{bot['id']}/stop"))
    while (await recv_json(producer)).get("action") != "stop":
        pass
    await produce(producer, "stop", {"reason": "asked"})
    resp = await asyncio.wait_for(stopping, 5)
    assert resp.status == 200, resp.text
    assert resp.body["status"] == "finished" and resp.body["stop_reason"] == "asked", resp.body
    while (event := await recv_json(subscriber)).get("type") != "stop":
        pass
    assert event["data"]["reason"] == "asked", event
    await subscriber.close()
    await producer.close()

    other = await create_bot(api(http, cluster, tenant, 0))
    first = await open_url(_on(other["producer_url"], on[1]))
    await produce(first, "start", {})
    second = await open_url(_on(other["producer_url"], on[2]))
    replaced = await recv_json(first)
    assert replaced.get("type") == "error" and replaced.get("error") == "replaced", replaced
    assert await expect_close(first) == 1008
    await produce(second, "stop", {"reason": "done"})
    await second.close()


def _on(url: str, base: str) -> str:
    """``url`` with its scheme and host replaced by ``base`` (another node)."""
    return url.replace(_base(url), base)


def _base(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def test_a_slow_consumer_on_one_node_delays_no_one_elsewhere(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    """A subscriber on node A that never reads, beside readers on A and B: with
    ~2 MB published through node C, both readers get every event in order and
    the last one within 5 s of its acknowledgement."""
    sid = new_sid()
    await api(http, cluster, tenant, 2).create_call(sid)
    stalled = await RawWebSocket.connect(
        cluster.nodes[0], f"/live-transcript/{sid}?token={tenant.read}", rcvbuf=4096
    )
    assert stalled.status == 101
    readers = [(await open_live(cluster.nodes[n], sid, tenant.read))[0] for n in (0, 1)]
    count, body = 250, "x" * 8000

    async def read(ws: Any) -> tuple[list[int], float]:
        seqs: list[int] = []
        while True:
            msg = await recv_json(ws, 15)
            if msg.get("type") == "transcript":
                seqs.append(msg["seq"])
                if msg["data"]["content"].startswith(f"{count - 1} "):
                    return seqs, time.monotonic()

    reading = [asyncio.create_task(read(ws)) for ws in readers]
    producer = await connect_ingest(cluster.nodes[2], sid, tenant.write)
    seqs: list[int] = []
    for start in range(0, count, 25):  # windows of 25: the producer stays near the readers
        for i in range(start, start + 25):
            await send_json(producer, transcript(f"{i} {body}"))
        for _ in range(25):
            seqs.append((await recv_json(producer))["seq"])
    acked_at = time.monotonic()
    for got, last_at in await asyncio.gather(*reading):
        assert got == seqs
        assert last_at - acked_at < 5.0
    for ws in readers:
        await ws.close()
    await producer.close()


async def test_a_segment_fires_once_across_nodes(
    cluster: Cluster, tenant: Tenant, http: aiohttp.ClientSession
) -> None:
    admin = Api(http, cluster.nodes[0], cluster.nodes[0].create_key(tenant.org, "admin"))
    body = {"name": "Refund", "kind": "keyword", "keywords": ["refund"]}
    rule = await admin.request("POST", "/v1/alert-rules", json_body=body)
    assert rule.status == 201, rule.text
    ws = await connect_events(cluster.nodes[2], tenant.read)
    await act(ws, "alert", "*")
    nodes = [Api(http, node, tenant.rw) for node in cluster.nodes[:2]]
    sid = new_sid()
    await nodes[0].create_call(sid)
    said = transcript("I want a refund", speaker="user", segment_id="s1")
    both = await asyncio.gather(*(api.post_transcript(sid, said) for api in nodes))
    later = await nodes[1].post_transcript(sid, transcript("refund!", speaker="user"))
    first, second = await recv_json(ws), await recv_json(ws)
    await ws.close()
    assert (first["type"], first["call_sid"]) == ("alert", sid)
    assert first["data"]["segment_seq"] in both and first["data"]["number"] == 1
    assert (second["data"]["segment_seq"], second["data"]["number"]) == (later, 2)
    assert first["data"]["rule"]["id"] == rule.body["id"]
    deleted = await admin.request("DELETE", f"/v1/alert-rules/{rule.body['id']}")
    assert deleted.status == 204
