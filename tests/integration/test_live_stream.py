"""Live transcript stream: message order, history, resume, client messages, call end."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from .helpers import (
    Api,
    ServerProcess,
    Tenant,
    assert_timestamp,
    collect_until_closed,
    connect_ingest,
    expect_close,
    expect_refusal,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    send_json,
    transcript,
)

TERMINAL = ["completed", "failed", "busy", "no-answer", "canceled"]
CALL_FIELDS = {
    "to_phone_number": "+14155550100",
    "customer_phone_number": "+14155550199",
    "call_type": "outbound",
}


def check_transcript_event(event: dict[str, Any], sid: str, body: dict[str, Any]) -> None:
    """The event carries the documented fields and the data that was posted."""
    assert event["type"] == "transcript", event
    assert event["call_sid"] == sid
    assert_timestamp(event["timestamp"])
    assert isinstance(event["seq"], int)
    data = event["data"]
    for name, value in body.items():
        assert data[name] == value, f"data[{name!r}] = {data.get(name)!r}, posted {value!r}"
    for name in ("content", "speaker", "is_final", "confidence", "segment_start", "segment_end"):
        assert name in data, f"transcript data lacks {name!r}: {data}"
    assert_timestamp(data["created_at"])


async def test_stream_order_is_established_status_history_live(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A subscriber gets connection_established, the status snapshot, history in seq order, then
    live events."""
    sid = new_sid()
    call = await api_a.create_call(sid, **CALL_FIELDS)
    history_bodies = [transcript(f"history {i}", speaker="user") for i in range(3)]
    history_seqs = [await api_a.post_transcript(sid, b) for b in history_bodies]
    assert history_seqs == [2, 3, 4], "seq 1 is the call's initial status event"

    ws, snapshot = await open_live(server, sid, tenant_a.read)
    async with ws:
        assert snapshot["status"] == "in-progress"
        metadata = snapshot["metadata"]
        for name, value in CALL_FIELDS.items():
            assert metadata[name] == value, f"snapshot metadata {name}: {metadata}"
        assert metadata["assistant_id"] == call["assistant_id"]

        live_body = transcript("live one", speaker="assistant", segment_id="seg_live")
        live_seq = await api_a.post_transcript(sid, live_body)
        msgs = await read_until_seq(ws, live_seq)

    assert [m["seq"] for m in msgs] == [1, 2, 3, 4, 5]
    initial = msgs[0]
    assert initial["type"] == "call_status"
    assert initial["status"] == "in-progress"
    assert initial["call_sid"] == sid
    assert_timestamp(initial["timestamp"])
    assert initial["metadata"]["to_phone_number"] == CALL_FIELDS["to_phone_number"]
    for event, body in zip(msgs[1:4], history_bodies, strict=True):
        check_transcript_event(event, sid, body)
    check_transcript_event(msgs[4], sid, live_body)


async def test_history_replays_only_the_latest_version_of_each_segment(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """History keeps the final of a finished segment and the latest partial of an unfinished one."""
    sid = new_sid()
    await api_a.create_call(sid)
    bodies = [
        transcript("Hel", segment_id="seg_a", is_final=False, confidence=None),  # 2
        transcript("Hello", segment_id="seg_a", is_final=False, confidence=0.5),  # 3
        transcript("Wha", segment_id="seg_b", is_final=False, speaker="user"),  # 4
        transcript("Hello there.", segment_id="seg_a", is_final=True),  # 5
        transcript("Fine, thanks.", segment_id="seg_c", is_final=True, speaker="user"),  # 6
        transcript("What is", segment_id="seg_b", is_final=False, speaker="user"),  # 7
    ]
    seqs = [await api_a.post_transcript(sid, b) for b in bodies]
    assert seqs == [2, 3, 4, 5, 6, 7]

    ws, _ = await open_live(server, sid, tenant_a.read)
    async with ws:
        marker = transcript("marker", segment_id="seg_m")
        marker_seq = await api_a.post_transcript(sid, marker)
        msgs = await read_until_seq(ws, marker_seq)

    assert [m["seq"] for m in msgs] == [1, 5, 6, 7, marker_seq]
    check_transcript_event(msgs[1], sid, bodies[3])
    check_transcript_event(msgs[2], sid, bodies[4])
    check_transcript_event(msgs[3], sid, bodies[5])
    check_transcript_event(msgs[4], sid, marker)


async def test_live_seqs_increase_by_one_under_concurrent_ingest(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """Events posted concurrently reach a subscriber with seqs increasing by exactly 1."""
    sid = new_sid()
    await api_a.create_call(sid)
    ws, _ = await open_live(server, sid, tenant_a.read)
    async with ws:
        assert (await read_until_seq(ws, 1))[-1]["type"] == "call_status"
        bodies = [transcript(f"concurrent {i}") for i in range(30)]
        seqs = await asyncio.gather(*(api_a.post_transcript(sid, b) for b in bodies))
        assert sorted(seqs) == list(range(2, 32))
        msgs = await read_until_seq(ws, 31)
    assert [m["seq"] for m in msgs] == list(range(2, 32))
    content_by_seq = {seq: b["content"] for seq, b in zip(seqs, bodies, strict=True)}
    for m in msgs:
        assert m["data"]["content"] == content_by_seq[m["seq"]]


async def test_since_resumes_with_exactly_the_missed_events(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """Reconnecting with since=<last seq seen> yields the snapshot, then exactly the missed
    events."""
    sid = new_sid()
    await api_a.create_call(sid)
    await api_a.post_transcripts(sid, [transcript(f"before {i}") for i in range(4)])

    ws, _ = await open_live(server, sid, tenant_a.read)
    seen = await read_until_seq(ws, 5)
    await ws.close()
    last = seen[-1]["seq"]

    missed_bodies = [transcript(f"missed {i}") for i in range(5)]
    missed = [await api_a.post_transcript(sid, b) for b in missed_bodies]
    await api_a.post_status(sid, "in-progress", {"note": "still talking"})

    ws, snapshot = await open_live(server, sid, tenant_a.read, since=last)
    async with ws:
        assert snapshot["status"] == "in-progress"
        msgs = await read_until_seq(ws, missed[-1] + 1)
        assert [m["seq"] for m in msgs] == list(range(last + 1, missed[-1] + 2))
        for event, body in zip(msgs, missed_bodies, strict=False):
            check_transcript_event(event, sid, body)
        assert msgs[-1]["type"] == "call_status"

        # Nothing is replayed twice: the next message is the next live event.
        marker_seq = await api_a.post_transcript(sid, transcript("marker"))
        assert [m["seq"] for m in await read_until_seq(ws, marker_seq)] == [marker_seq]


async def test_since_at_the_head_sends_only_the_snapshot(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A client already up to date gets the status snapshot, no history, then live events."""
    sid = new_sid()
    await api_a.create_call(sid)
    head = (await api_a.post_transcripts(sid, [transcript("a"), transcript("b")]))[-1]
    ws, snapshot = await open_live(server, sid, tenant_a.read, since=head)
    async with ws:
        assert snapshot["status"] == "in-progress"
        marker_seq = await api_a.post_transcript(sid, transcript("marker"))
        assert [m["seq"] for m in await read_until_seq(ws, marker_seq)] == [marker_seq]


async def test_ping_gets_a_pong_with_a_timestamp(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A client ping is answered with a pong carrying a timestamp."""
    sid = new_sid()
    await api_a.create_call(sid)
    ws, _ = await open_live(server, sid, tenant_a.read, since=1)
    async with ws:
        await send_json(ws, {"type": "ping"})
        pong = await recv_json(ws)
        assert pong["type"] == "pong"
        assert_timestamp(pong["timestamp"])


async def test_request_status_returns_the_current_status_without_seq(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """request_status is answered with a call_status carrying the current status and no seq."""
    sid = new_sid()
    call = await api_a.create_call(sid, status="queued")
    assert call["status"] == "queued"
    ws, snapshot = await open_live(server, sid, tenant_a.read, since=1)
    async with ws:
        assert snapshot["status"] == "queued"
        seq = await api_a.post_status(sid, "ringing", {"carrier": "acme-telco"})
        event = (await read_until_seq(ws, seq))[-1]
        assert event["type"] == "call_status"
        assert event["status"] == "ringing"
        assert event["metadata"]["carrier"] == "acme-telco"

        await send_json(ws, {"type": "request_status"})
        status = await recv_json(ws)
        assert status["type"] == "call_status"
        assert status["call_sid"] == sid
        assert status["status"] == "ringing"
        assert "seq" not in status
        assert isinstance(status["metadata"], dict)
        assert_timestamp(status["timestamp"])


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("{not json", id="bad-json"),
        pytest.param(json.dumps({"type": "subscribe_everything"}), id="unknown-type"),
        pytest.param(json.dumps({"no_type": True}), id="no-type"),
        pytest.param(json.dumps([{"type": "ping"}]), id="array"),
        pytest.param(json.dumps("ping"), id="string"),
        pytest.param(b"\x00\x01binary", id="binary-frame"),
    ],
)
async def test_invalid_client_message_gets_an_error_and_the_stream_stays_open(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, frame: str | bytes
) -> None:
    """Bad JSON, an unknown type or a binary frame gets one invalid_message error; the stream lives
    on."""
    sid = new_sid()
    await api_a.create_call(sid)
    ws, _ = await open_live(server, sid, tenant_a.read, since=1)
    async with ws:
        await ws.send(frame)
        error = await recv_json(ws)
        assert error["type"] == "error"
        assert error["error"] == "invalid_message"
        assert isinstance(error["message"], str)
        await send_json(ws, {"type": "ping"})
        assert (await recv_json(ws))["type"] == "pong"
        seq = await api_a.post_transcript(sid, transcript("after the error"))
        assert (await read_until_seq(ws, seq))[-1]["seq"] == seq


async def test_terminal_status_follows_every_earlier_transcript_then_closes_1000(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """Subscribers get every transcript appended before a terminal status, then the status, then
    close 1000."""
    sid = new_sid()
    await api_a.create_call(sid)
    subscribers = [(await open_live(server, sid, tenant_a.read))[0] for _ in range(3)]
    producer = await connect_ingest(server, sid, tenant_a.write)
    async with producer:
        # Pipelined: the status is sent right behind the transcripts without waiting for acks.
        for i in range(50):
            await send_json(producer, transcript(f"line {i}"))
        await send_json(
            producer, {"type": "status", "status": "completed", "metadata": {"duration": 42}}
        )
        acks = [await recv_json(producer) for _ in range(51)]
    assert [a.get("seq") for a in acks] == list(range(2, 53)), acks[:3]

    for ws in subscribers:
        msgs, code = await collect_until_closed(ws)
        assert [m["seq"] for m in msgs] == list(range(1, 53))
        assert [m["data"]["content"] for m in msgs[1:51]] == [f"line {i}" for i in range(50)]
        final = msgs[-1]
        assert final["type"] == "call_status"
        assert final["status"] == "completed"
        assert final["metadata"]["duration"] == 42
        assert code == 1000


async def test_connecting_to_an_ended_call_replays_history_then_closes_1000(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A subscriber to an ended call gets the snapshot, the whole history, then close 1000."""
    sid = new_sid()
    await api_a.create_call(sid)
    await api_a.post_transcripts(sid, [transcript(f"t{i}") for i in range(5)])
    end = await api_a.post_status(sid, "completed")
    assert end == 7

    ws, snapshot = await open_live(server, sid, tenant_a.read)
    assert snapshot["status"] == "completed"
    msgs, code = await collect_until_closed(ws)
    assert [m["seq"] for m in msgs] == list(range(1, 8))
    assert msgs[-1]["type"] == "call_status" and msgs[-1]["status"] == "completed"
    assert code == 1000

    ws, snapshot = await open_live(server, sid, tenant_a.read, since=end)
    assert snapshot["status"] == "completed"
    assert await expect_close(ws) == 1000


@pytest.mark.parametrize("status", TERMINAL)
async def test_every_terminal_status_ends_the_stream(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, status: str
) -> None:
    """Each terminal status is delivered and then the stream is closed with 1000."""
    sid = new_sid()
    await api_a.create_call(sid)
    ws, _ = await open_live(server, sid, tenant_a.read, since=1)
    seq = await api_a.post_status(sid, status, {"reason": "test"})
    msgs, code = await collect_until_closed(ws)
    assert [(m["seq"], m["type"], m["status"]) for m in msgs] == [(seq, "call_status", status)]
    assert code == 1000


async def test_non_terminal_status_keeps_the_stream_open(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """queued, ringing and in-progress are delivered without closing the stream."""
    sid = new_sid()
    await api_a.create_call(sid, status="queued")
    ws, _ = await open_live(server, sid, tenant_a.read, since=1)
    async with ws:
        for status in ("ringing", "in-progress"):
            seq = await api_a.post_status(sid, status)
            event = (await read_until_seq(ws, seq))[-1]
            assert event["type"] == "call_status" and event["status"] == status
        seq = await api_a.post_transcript(sid, transcript("still open"))
        assert (await read_until_seq(ws, seq))[-1]["data"]["content"] == "still open"


async def test_transcripts_racing_a_terminal_status_are_stored_before_it_or_refused(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """Transcripts posted concurrently with a terminal status are stored before it or get 409,
    and subscribers get every stored one before the status."""
    sid = new_sid()
    await api_a.create_call(sid)
    ws, _ = await open_live(server, sid, tenant_a.read, since=1)

    async def post(i: int) -> tuple[int, Any]:
        resp = await api_a.request(
            "POST", f"/v1/calls/{sid}/transcripts", json_body=transcript(f"race {i}")
        )
        return resp.status, resp.body

    async def end() -> tuple[int, Any]:
        await asyncio.sleep(0)
        resp = await api_a.request(
            "POST", f"/v1/calls/{sid}/status", json_body={"status": "completed", "metadata": {}}
        )
        return resp.status, resp.body

    *posts, ended = await asyncio.gather(*(post(i) for i in range(40)), end())
    assert ended[0] == 201, ended
    end_seq = ended[1]["seq"]
    stored = {body["seq"]: i for i, (status, body) in enumerate(posts) if status == 201}
    for status, body in posts:
        assert status in (201, 409), (status, body)
        if status == 409:
            assert body["error"] == "call_ended"
    assert all(seq < end_seq for seq in stored), "a transcript was stored after the call ended"
    assert sorted(stored) == list(range(2, end_seq))

    msgs, code = await collect_until_closed(ws)
    assert [m["seq"] for m in msgs] == list(range(2, end_seq + 1))
    assert msgs[-1]["status"] == "completed"
    assert code == 1000
    segments = (await api_a.get_call(sid))["transcript"]
    assert [s["content"] for s in segments] == [f"race {stored[seq]}" for seq in sorted(stored)]


@pytest.mark.parametrize("since", ["abc", "-1", "1.5"])
async def test_malformed_since_is_refused_with_1008(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, since: str
) -> None:
    """A since that is not a non-negative integer is refused like any other refusal: one error,
    then 1008 (1000 would tell the client that the call ended)."""
    sid = new_sid()
    await api_a.create_call(sid)
    msg, _ = await expect_refusal(
        server, f"/live-transcript/{sid}", tenant_a.read, query={"since": since}
    )
    assert msg["call_sid"] == sid


async def test_fragmented_messages_and_control_pings_are_handled(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A ping split over continuation frames is answered, and a WebSocket ping gets its pong."""
    sid = new_sid()
    await api_a.create_call(sid)
    ws, _ = await open_live(server, sid, tenant_a.read, since=1)
    async with ws:
        await ws.send(['{"type":', '"ping"}'])
        assert (await recv_json(ws))["type"] == "pong"
        pong_waiter = await ws.ping(b"are you there")
        await asyncio.wait_for(pong_waiter, 5)
