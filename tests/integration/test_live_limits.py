"""Live transcript stream limits: client message rate, frame size, UTF-8, keepalive pings."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from .helpers import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Api,
    RawWebSocket,
    ServerProcess,
    Tenant,
    connect_ingest,
    expect_close,
    open_live,
    recv_json,
    running_server,
    send_json,
    transcript,
)

RATE = 20
MAX_FRAME = 1024
PING_INTERVAL = 1

PRODUCER_RATE = 100

LIMITS_ENV = {
    "SCRIBELINE_CLIENT_MESSAGES_PER_SECOND": str(RATE),
    "SCRIBELINE_PRODUCER_MESSAGES_PER_SECOND": str(PRODUCER_RATE),
    "SCRIBELINE_MAX_FRAME_BYTES": str(MAX_FRAME),
    "SCRIBELINE_PING_INTERVAL": str(PING_INTERVAL),
    "SCRIBELINE_PING_TIMEOUT": str(PING_INTERVAL),
}


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a low message rate, 1 KiB frames and 1 s pings."""
    with running_server(tmp_path_factory.mktemp("limits") / "data", LIMITS_ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def tight_tenant(tight_server: ServerProcess) -> Tenant:
    return tight_server.create_tenant("limits")


@pytest.fixture
async def call_sid(tight_server: ServerProcess, tight_tenant: Tenant) -> str:
    async with aiohttp.ClientSession() as session:
        call = await Api(session, tight_server, tight_tenant.rw).create_call()
    sid = call["call_sid"]
    assert isinstance(sid, str)
    return sid


async def test_burst_over_the_message_rate_is_rate_limited_and_closed_1008(
    tight_server: ServerProcess, tight_tenant: Tenant, call_sid: str
) -> None:
    """More client messages per second than allowed get one rate_limited error and close 1008."""
    ws, _ = await open_live(tight_server, call_sid, tight_tenant.read, since=1)
    for _ in range(RATE * 3):
        await send_json(ws, {"type": "ping"})
    pongs = 0
    while True:
        msg = await recv_json(ws)
        if msg["type"] != "pong":
            break
        pongs += 1
    assert msg["type"] == "error", msg
    assert msg["error"] == "rate_limited"
    assert pongs <= RATE, f"{pongs} pings answered within one burst; the limit is {RATE}/s"
    assert await expect_close(ws) == 1008


async def test_messages_within_the_rate_are_all_answered(
    tight_server: ServerProcess, tight_tenant: Tenant, call_sid: str
) -> None:
    """A client that stays under the message rate gets every answer and keeps its stream."""
    ws, _ = await open_live(tight_server, call_sid, tight_tenant.read, since=1)
    async with ws:
        for _ in range(RATE // 2):
            await send_json(ws, {"type": "ping"})
        for _ in range(RATE // 2):
            assert (await recv_json(ws))["type"] == "pong"


async def test_frame_at_the_limit_is_accepted(
    tight_server: ServerProcess, tight_tenant: Tenant, call_sid: str
) -> None:
    """A frame of exactly the maximum size is processed normally."""
    ws, _ = await open_live(tight_server, call_sid, tight_tenant.read, since=1)
    async with ws:
        ping = '{"type":"ping"}'
        await ws.send(ping + " " * (MAX_FRAME - len(ping)))
        try:
            reply = await recv_json(ws)
        except ConnectionClosed as exc:
            raise AssertionError(
                f"a frame of exactly {MAX_FRAME} bytes (not over the limit) was refused: {exc}"
            ) from exc
        assert reply["type"] == "pong"


async def test_frame_over_the_limit_closes_1009(
    tight_server: ServerProcess, tight_tenant: Tenant, call_sid: str
) -> None:
    """A client frame over the maximum size closes the connection with 1009."""
    ws, _ = await open_live(tight_server, call_sid, tight_tenant.read, since=1)
    ping = '{"type":"ping"}'
    await ws.send(ping + " " * (MAX_FRAME + 1 - len(ping)))
    assert await expect_close(ws) == 1009


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xfe", id="invalid-bytes"),
        pytest.param(b'{"type":"ping","x":"\xe2\x82"}', id="truncated-sequence"),
        pytest.param(b'{"type":"ping","x":"\xed\xa0\x80"}', id="surrogate"),
    ],
)
async def test_invalid_utf8_in_a_text_frame_closes_1007(
    tight_server: ServerProcess, tight_tenant: Tenant, call_sid: str, payload: bytes
) -> None:
    """A text frame that is not valid UTF-8 closes the connection with 1007."""
    ws, _ = await open_live(tight_server, call_sid, tight_tenant.read, since=1)
    await ws.send(payload, text=True)
    assert await expect_close(ws) == 1007


async def _raw_live(server: ServerProcess, sid: str, key: str) -> RawWebSocket:
    raw = await RawWebSocket.connect(server, f"/live-transcript/{sid}?token={key}")
    assert raw.status == 101, raw.status
    return raw


async def test_peer_that_never_answers_pings_is_dropped(
    tight_server: ServerProcess, tight_tenant: Tenant, call_sid: str
) -> None:
    """A peer that does not answer the server's WebSocket pings is disconnected."""
    raw = await _raw_live(tight_server, call_sid, tight_tenant.read)
    try:
        frames: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 4 * PING_INTERVAL + 5
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"still connected; frames: {[op for op, _ in frames]}"
            frame = await raw.read_frame(remaining)
            if frame is None or frame[0] == OP_CLOSE:
                break
            frames.append(frame)
        assert OP_PING in [op for op, _ in frames], "dropped before any ping was sent"
    finally:
        raw.close()


async def test_peer_that_answers_pings_stays_connected(
    tight_server: ServerProcess, tight_tenant: Tenant, call_sid: str
) -> None:
    """A peer that answers every WebSocket ping keeps its stream across several ping intervals."""
    raw = await _raw_live(tight_server, call_sid, tight_tenant.read)
    try:
        pings = 0
        texts: list[dict[str, Any]] = []
        while pings < 3:
            frame = await raw.read_frame(PING_INTERVAL * 3 + 5)
            assert frame is not None and frame[0] != OP_CLOSE, f"dropped after {pings} pings"
            opcode, payload = frame
            if opcode == OP_PING:
                pings += 1
                await raw.send_frame(OP_PONG, payload)
            elif opcode == OP_TEXT:
                texts.append(json.loads(payload))
        assert [m["type"] for m in texts[:2]] == ["connection_established", "call_status"]
        await raw.send_frame(OP_TEXT, b'{"type":"ping"}')
        while True:
            frame = await raw.read_frame()
            assert frame is not None and frame[0] != OP_CLOSE
            if frame[0] == OP_PING:
                await raw.send_frame(OP_PONG, frame[1])
            elif frame[0] == OP_TEXT:
                assert json.loads(frame[1])["type"] == "pong"
                break
    finally:
        raw.close()


async def test_a_producer_over_its_rate_is_slowed_down_not_disconnected(
    tight_server: ServerProcess, tight_tenant: Tenant, call_sid: str
) -> None:
    """A producer bursting past its message rate gets every ack, paced to the rate."""
    burst = PRODUCER_RATE * 2
    async with await connect_ingest(tight_server, call_sid, tight_tenant.write) as producer:
        started = time.monotonic()
        for i in range(burst):
            await send_json(producer, transcript(f"line {i}"))
        acks = [await recv_json(producer) for _ in range(burst)]
        elapsed = time.monotonic() - started
    assert [a["type"] for a in acks] == ["ack"] * burst
    assert [a["seq"] for a in acks] == list(range(acks[0]["seq"], acks[0]["seq"] + burst))
    # The first PRODUCER_RATE messages are the allowed burst; the rest arrive at the rate.
    assert elapsed >= (burst - PRODUCER_RATE) / PRODUCER_RATE * 0.9
