"""Producer WebSocket ``/v1/ingest/{call_sid}`` (PROTOCOL section 6)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from .helpers import (
    Api,
    ServerProcess,
    Tenant,
    connect_ingest,
    expect_refusal,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    running_server,
    send_json,
    transcript,
)


async def test_pipelined_messages_are_acked_in_order_with_their_refs(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """Pipelined transcripts are acked in order with consecutive seqs, each echoing its ref."""
    sid = new_sid()
    await api_a.create_call(sid)
    refs: list[Any] = []
    for i in range(40):
        refs.append([i, f"ref-{i}", i + 0.5, i % 2 == 0][i % 4])
    async with await connect_ingest(server, sid, tenant_a.write) as producer:
        for i, ref in enumerate(refs):
            await send_json(producer, transcript(f"line {i}", ref=ref))
        acks = [await recv_json(producer) for _ in refs]
    for i, (ack, ref) in enumerate(zip(acks, refs, strict=True)):
        assert ack["type"] == "ack", ack
        assert ack["seq"] == i + 2, ack
        assert ack["ref"] == ref and type(ack["ref"]) is type(ref), (ack, ref)

    call = await api_a.get_call(sid)
    assert [t["seq"] for t in call["transcript"]] == list(range(2, 42))
    assert [t["content"] for t in call["transcript"]] == [f"line {i}" for i in range(40)]


async def test_batch_is_acked_with_all_its_seqs(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A JSON array is stored as consecutive events and acked once with all their seqs."""
    sid = new_sid()
    await api_a.create_call(sid)
    async with await connect_ingest(server, sid, tenant_a.write) as producer:
        await send_json(producer, [transcript(f"batch {i}") for i in range(5)])
        ack = await recv_json(producer)
        assert ack["type"] == "ack" and ack["seqs"] == [2, 3, 4, 5, 6], ack
        await send_json(producer, transcript("single", ref="after-batch"))
        ack = await recv_json(producer)
        assert ack["seq"] == 7 and ack["ref"] == "after-batch"


async def test_status_message_is_acked_and_delivered(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A status message is stored with the next seq, acked, and reaches live subscribers."""
    sid = new_sid()
    await api_a.create_call(sid, status="ringing")
    ws, _ = await open_live(server, sid, tenant_a.read, since=1)
    async with ws, await connect_ingest(server, sid, tenant_a.write) as producer:
        await send_json(
            producer,
            {"type": "status", "status": "in-progress", "metadata": {"leg": "a"}, "ref": 7},
        )
        ack = await recv_json(producer)
        assert ack["type"] == "ack" and ack["seq"] == 2 and ack["ref"] == 7, ack
        event = (await read_until_seq(ws, 2))[-1]
        assert event["type"] == "call_status"
        assert event["status"] == "in-progress"
        assert event["metadata"]["leg"] == "a"


INVALID_MESSAGES = [
    pytest.param("{not json", id="bad-json"),
    pytest.param(json.dumps(transcript(speaker="robot")), id="bad-speaker"),
    pytest.param(json.dumps(transcript(confidence=1.5)), id="confidence-over-1"),
    pytest.param(json.dumps({"speaker": "user", "is_final": True}), id="no-content"),
    pytest.param(json.dumps([transcript("ok"), transcript(speaker="robot")]), id="bad-batch-item"),
    pytest.param(json.dumps({"type": "status", "status": "exploded"}), id="bad-status"),
    pytest.param(json.dumps("hello"), id="string"),
]


@pytest.mark.parametrize("message", INVALID_MESSAGES)
async def test_invalid_message_gets_an_error_writes_nothing_and_keeps_the_connection(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, message: str
) -> None:
    """An invalid message gets invalid_message, stores nothing, and the next valid one is acked."""
    sid = new_sid()
    await api_a.create_call(sid)
    async with await connect_ingest(server, sid, tenant_a.write) as producer:
        await producer.send(message)
        error = await recv_json(producer)
        assert error["type"] == "error", error
        assert error["error"] == "invalid_message", error
        assert isinstance(error["message"], str) and error["message"]
        await send_json(producer, transcript("valid", ref="next"))
        ack = await recv_json(producer)
        assert ack["type"] == "ack" and ack["ref"] == "next", ack
        assert ack["seq"] == 2, "the invalid message must not have consumed a seq"
    call = await api_a.get_call(sid)
    assert [t["content"] for t in call["transcript"]] == ["valid"]


async def test_appending_after_the_call_ended_is_refused(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """After a terminal status, a transcript sent on the producer socket gets a call_ended error."""
    sid = new_sid()
    await api_a.create_call(sid)
    async with await connect_ingest(server, sid, tenant_a.write) as producer:
        await send_json(producer, {"type": "status", "status": "completed", "metadata": {}})
        assert (await recv_json(producer))["seq"] == 2
        await send_json(producer, transcript("too late"))
        error = await recv_json(producer)
        assert error["type"] == "error" and error["error"] == "call_ended", error
    call = await api_a.get_call(sid)
    assert call["status"] == "completed"
    assert call["transcript"] == []


@pytest.mark.parametrize("method", ["query", "header", "subprotocol"])
async def test_each_auth_method_opens_the_producer(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, method: str
) -> None:
    """The producer socket accepts a write key in the query, the header or the subprotocol."""
    sid = new_sid()
    await api_a.create_call(sid)
    async with await connect_ingest(server, sid, tenant_a.write, method=method) as producer:
        if method == "subprotocol":
            assert producer.subprotocol == f"burki-token-{tenant_a.write}"
        await send_json(producer, transcript("hi", ref=1))
        assert (await recv_json(producer))["seq"] == 2


async def test_read_only_key_cannot_produce(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A key without the write scope is refused with one error and close 1008, and nothing is
    stored."""
    sid = new_sid()
    await api_a.create_call(sid)
    msg, _ = await expect_refusal(server, f"/v1/ingest/{sid}", tenant_a.read, method="header")
    assert msg["error"] in {"forbidden", "authentication_failed"}, msg
    assert (await api_a.get_call(sid))["transcript"] == []


async def test_unknown_key_cannot_produce(server: ServerProcess, api_a: Api) -> None:
    """An unknown key is refused with authentication_failed and close 1008."""
    sid = new_sid()
    await api_a.create_call(sid)
    msg, _ = await expect_refusal(server, f"/v1/ingest/{sid}", "scl_nope", method="header")
    assert msg["error"] == "authentication_failed"


async def test_another_organizations_call_cannot_be_produced_to(
    server: ServerProcess, tenant_b: Tenant, api_a: Api
) -> None:
    """Another organization's call is refused as not_found, exactly like a missing call."""
    sid = new_sid()
    await api_a.create_call(sid)
    foreign, _ = await expect_refusal(server, f"/v1/ingest/{sid}", tenant_b.rw, method="header")
    missing_sid = new_sid()
    missing, _ = await expect_refusal(
        server, f"/v1/ingest/{missing_sid}", tenant_b.rw, method="header"
    )
    assert foreign["error"] == missing["error"] == "not_found"
    assert foreign["message"] == missing["message"].replace(missing_sid, sid)
    assert (await api_a.get_call(sid))["transcript"] == []


async def test_a_long_pipeline_is_fully_acked_in_order(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """2,000 messages sent without waiting are all stored and acked in order (backpressure, no
    drops)."""
    sid = new_sid()
    await api_a.create_call(sid)
    total = 2000
    async with await connect_ingest(server, sid, tenant_a.write) as producer:

        async def send_all() -> None:
            for i in range(total):
                await send_json(producer, transcript(f"p{i}", ref=i))

        sender = asyncio.create_task(send_all())
        for i in range(total):
            ack = await recv_json(producer, within=30)
            assert ack.get("type") == "ack" and ack["seq"] == i + 2 and ack["ref"] == i, ack
        await sender
    segments = await api_a.final_transcript(sid)
    assert len(segments) == total and segments[-1]["content"] == f"p{total - 1}"


async def test_messages_read_before_a_refusal_are_stored_published_and_acked(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A producer closed for flooding (WebSocket pings past its rate) still gets the
    ack of every message read before, in order, before the refusal; and each of
    those events is published, so a live subscriber sees it."""
    env = {"SCRIBELINE_PRODUCER_MESSAGES_PER_SECOND": "10"}
    with running_server(tmp_path / "data", env) as server:
        tenant = server.create_tenant("flood")
        api = Api(http, server, tenant.rw)
        sid = new_sid()
        await api.create_call(sid)
        subscriber, _ = await open_live(server, sid, tenant.read, since=1)
        async with subscriber, await connect_ingest(server, sid, tenant.write) as producer:
            for n in range(5):
                await send_json(producer, transcript(f"before {n}", ref=n))
            for _ in range(30):
                await producer.ping()
            answers = []
            with contextlib.suppress(ConnectionClosed):
                while True:
                    answers.append(await recv_json(producer))
            acks = [(a["type"], a.get("seq"), a.get("ref")) for a in answers]
            assert acks[:5] == [("ack", n + 2, n) for n in range(5)], answers
            assert answers[5]["error"] == "rate_limited", answers
            live = await read_until_seq(subscriber, 6)
        assert [m["data"]["content"] for m in live] == [f"before {n}" for n in range(5)]
