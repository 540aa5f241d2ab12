"""A subscriber that stops reading never delays the others and is cut off (PROTOCOL section 1)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import orjson
import psutil
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .helpers import (
    OP_CLOSE,
    Api,
    RawWebSocket,
    ServerProcess,
    Tenant,
    connect_ingest,
    open_live,
    read_until_seq,
    recv_json,
    send_json,
    transcript,
)

READERS = 100
EVENTS = 750
CONTENT = "x" * 8000  # about 8 KB per event, about 6 MB in all: far past 256 KiB + kernel buffers
WINDOW = 16  # the publisher never gets more than this many events ahead of the slowest reader
PROMPT = 5.0  # seconds from the last ack to the last reader receiving the last event
MAX_RSS_GROWTH = 64 * 2**20


async def test_stalled_subscriber_is_closed_and_never_delays_the_others(
    fanout_server: ServerProcess, fanout_tenant: Tenant
) -> None:
    """With one client not reading, 100 readers still get ~6 MB promptly, the stalled one is closed,
    and server memory stays bounded."""
    async with aiohttp.ClientSession() as session:
        sid = (await Api(session, fanout_server, fanout_tenant.rw).create_call())["call_sid"]

    # A raw client with a tiny receive buffer completes the handshake and never reads again.
    stalled = await RawWebSocket.connect(
        fanout_server, f"/live-transcript/{sid}?token={fanout_tenant.read}", rcvbuf=4096
    )
    assert stalled.status == 101

    readers: list[ClientConnection] = []
    for _ in range(READERS):
        ws, _ = await open_live(fanout_server, sid, fanout_tenant.read)
        assert [m["seq"] for m in await read_until_seq(ws, 1)] == [1]
        readers.append(ws)

    server_proc = psutil.Process(fanout_server.pid)
    baseline_rss = server_proc.memory_info().rss
    peak_rss = baseline_rss

    async def sample_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, server_proc.memory_info().rss)
            await asyncio.sleep(0.05)

    first_seq, last_seq = 2, EVENTS + 1
    progress = [1] * READERS
    advanced = asyncio.Event()
    received_last_at: list[float] = [0.0] * READERS
    last_ack_at = 0.0

    async def read(index: int, ws: ClientConnection) -> None:
        expected = first_seq
        while expected <= last_seq:
            raw = await asyncio.wait_for(ws.recv(), 30)
            seq = orjson.loads(raw)["seq"]
            assert seq == expected, f"reader {index}: got seq {seq}, expected {expected}"
            progress[index] = seq
            advanced.set()
            expected += 1
        received_last_at[index] = time.monotonic()

    async def publish(producer: ClientConnection) -> None:
        for seq in range(first_seq, last_seq + 1):
            while min(progress) < seq - WINDOW:
                advanced.clear()
                try:
                    await asyncio.wait_for(advanced.wait(), 10)
                except TimeoutError:
                    raise AssertionError(
                        f"readers stuck at seq {min(progress)} while publishing seq {seq}"
                    ) from None
            await send_json(producer, transcript(CONTENT, ref=seq))

    async def read_acks(producer: ClientConnection) -> None:
        nonlocal last_ack_at
        for seq in range(first_seq, last_seq + 1):
            ack = await recv_json(producer, within=30)
            assert ack.get("seq") == seq, ack
        last_ack_at = time.monotonic()

    sampler = asyncio.create_task(sample_rss())
    try:
        async with await connect_ingest(fanout_server, sid, fanout_tenant.write) as producer:
            await asyncio.wait_for(
                asyncio.gather(
                    publish(producer),
                    read_acks(producer),
                    *(read(i, ws) for i, ws in enumerate(readers)),
                ),
                60,
            )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        for ws in readers:
            with contextlib.suppress(Exception):
                await ws.close()

    lag = max(received_last_at) - last_ack_at
    assert lag < PROMPT, f"the last reader got the last event {lag:.1f} s after its ack"
    growth = peak_rss - baseline_rss
    assert growth < MAX_RSS_GROWTH, f"server RSS grew by {growth / 2**20:.0f} MiB"

    # Now drain the stalled socket: it must end (EOF, reset, or a close frame) rather than
    # keep delivering, and a close frame, if one made it through, says 1013.
    try:
        deadline = time.monotonic() + 15
        frames = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                frame = await stalled.read_frame(max(remaining, 0.01))
            except TimeoutError:
                raise AssertionError(
                    f"the stalled connection is still open after {frames} frames"
                ) from None
            if frame is None:
                break
            opcode, payload = frame
            if opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big")
                assert code == 1013, f"stalled client closed with {code}, expected 1013"
                break
            frames += 1
        assert frames < EVENTS, "the stalled client was sent everything, so it was never cut off"
    finally:
        stalled.close()


async def _catch_up(
    server: ServerProcess, sid: str, key: str, since: int, last_seq: int
) -> list[int]:
    """Resume with since until last_seq arrives, reconnecting after each close, as a client
    would; return every seq received."""
    seqs: list[int] = []
    for _ in range(20):
        ws, _ = await open_live(server, sid, key, since=since)
        try:
            while since < last_seq:
                since = (await recv_json(ws, within=10))["seq"]
                seqs.append(since)
            await ws.close()
            return seqs
        except ConnectionClosed:
            continue
    raise AssertionError(f"not caught up after 20 reconnects: at seq {since} of {last_seq}")


async def test_client_that_falls_behind_gets_1013_and_resumes_with_since(
    fanout_server: ServerProcess, fanout_tenant: Tenant
) -> None:
    """A client that stops reading for a moment gets a gap-free prefix then close 1013, and
    resuming with since delivers the rest exactly once."""
    async with aiohttp.ClientSession() as session:
        sid = (await Api(session, fanout_server, fanout_tenant.rw).create_call())["call_sid"]
    # max_queue=1: the library stops reading the socket as soon as one message is pending.
    slow, _ = await open_live(fanout_server, sid, fanout_tenant.read, since=1, max_queue=1)
    total = 400  # about 3 MB
    async with await connect_ingest(fanout_server, sid, fanout_tenant.write) as producer:
        for i in range(total):
            await send_json(producer, transcript(CONTENT, ref=i))
        for i in range(total):
            assert (await recv_json(producer, within=30))["seq"] == i + 2
    last_seq = total + 1

    # Read again right away: whatever was queued, then the server's close frame.
    seqs: list[int] = []
    closed: ConnectionClosed | None = None
    try:
        while True:
            seqs.append((await recv_json(slow, within=10))["seq"])
    except ConnectionClosed as exc:
        closed = exc
    assert seqs == list(range(2, 2 + len(seqs))), "the prefix before the close has a gap"
    assert len(seqs) < total, "the client was never cut off"

    rest = await _catch_up(fanout_server, sid, fanout_tenant.read, seqs[-1], last_seq)
    assert rest == list(range(seqs[-1] + 1, last_seq + 1))

    assert closed.rcvd is not None and closed.rcvd.code == 1013, (
        f"the slow client's connection ended without a 1013 close frame ({closed})"
    )


async def test_history_larger_than_the_send_buffer_reaches_a_reading_client(
    fanout_server: ServerProcess, fanout_tenant: Tenant
) -> None:
    """A subscriber that reads at full speed gets a history several times the per-connection
    send buffer in one connection; replaying history is not a slow consumer."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, fanout_server, fanout_tenant.rw)
        sid = (await api.create_call())["call_sid"]
        for _ in range(16):  # 16 x 50 x 8 KB: about 6.4 MB against a 256 KiB buffer
            await api.post_transcripts(sid, [transcript(CONTENT) for _ in range(50)])
    last_seq = 801
    for since in (None, 1):
        ws, _ = await open_live(fanout_server, sid, fanout_tenant.read, since=since)
        async with ws:
            try:
                msgs = await read_until_seq(ws, last_seq)
            except ConnectionClosed as exc:
                raise AssertionError(
                    f"a client reading at full speed was closed during history replay ({exc})"
                ) from exc
        assert [m["seq"] for m in msgs] == list(range((since or 0) + 1, last_seq + 1))
