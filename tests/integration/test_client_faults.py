"""Fault injection for the client SDK's live transcript: a TCP relay that drops connections
at random and a server killed and restarted mid-call. Whatever happens on the way, the
client's sequence of events equals the stored stream exactly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from scribeline.client import (
    AsyncClient,
    Backoff,
    ConnectionFailedError,
    KeepAlive,
    ReconnectFailed,
    StatusEvent,
    Stream,
    TranscriptEvent,
)
from scribeline.client.stream import RetryNotice

from .helpers import ServerProcess, Tenant, new_sid

SHORT_BACKOFF = Backoff(initial=0.05, maximum=0.5)
KEEPALIVE = KeepAlive(ping_interval=1.0, stall_timeout=3.0)
STATUSES = ("ringing", "in-progress", "queued", "in-progress")
#: (seq, type, content or status): what the client saw, and what storage holds.
Item = tuple[int, str, str]


# --------------------------------------------------------------------------- the relay


class Relay:
    """An asyncio TCP relay on 127.0.0.1: forwards each connection to ``backend_port``
    (which may change, so a restarted server stays behind the same address) and drops
    every current connection on demand, or at random with a seeded RNG."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = 0
        self.drops = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        #: Connections whose bytes are swallowed (a dead network path that stays "open").
        self._black_holed: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.transport.abort()  # the backend is down: the client sees a dropped handshake
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            self._black_holed.difference_update(pair)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if writer in self._black_holed:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            writer.transport.abort()
            return
        # A clean end (the server closed after its close frame): pass it on once flushed.
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    def drop_all(self) -> int:
        """Abort both sides of every open connection; how many there were."""
        pairs = list(self._pairs)
        for client_side, server_side in pairs:
            client_side.transport.abort()
            server_side.transport.abort()
        self.drops += len(pairs)
        return len(pairs)

    def black_hole_all(self) -> None:
        """From now on, swallow everything on the current connections without closing them."""
        for pair in self._pairs:
            self._black_holed.update(pair)

    def drop_at_random(self, rng: random.Random, low: float, high: float) -> None:
        """Drop every connection again and again, ``low`` to ``high`` seconds apart."""

        async def chaos() -> None:
            while True:
                await asyncio.sleep(rng.uniform(low, high))  # the drop schedule (load shaping)
                self.drop_all()

        task = asyncio.create_task(chaos())
        self._tasks.add(task)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
        self.drop_all()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@pytest.fixture
async def relay_to(server: ServerProcess) -> AsyncIterator[Callable[[int], Awaitable[Relay]]]:
    """Start relays (to the shared server by default); closed after the test."""
    relays: list[Relay] = []

    async def make(port: int = server.port) -> Relay:
        relay = Relay(port)
        await relay.start()
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        await relay.close()


# --------------------------------------------------------------------------- helpers


def item(event: Any) -> Item:
    """The comparable part of a sequenced event."""
    if isinstance(event, TranscriptEvent):
        return (event.seq, "transcript", event.content)
    assert isinstance(event, StatusEvent) and event.seq is not None, event
    return (event.seq, "call_status", event.status)


async def follow(stream: Stream[Any]) -> list[Item]:
    """Every sequenced event of the stream until it ends; exactly one snapshot first."""
    items: list[Item] = []
    snapshots = 0
    async with stream:
        async for event in stream:
            if isinstance(event, StatusEvent) and event.seq is None:
                snapshots += 1
                assert not items, "the snapshot comes first"
                continue
            items.append(item(event))
    assert snapshots == 1
    return items


async def stored_stream(base_url: str, key: str, sid: str) -> list[Item]:
    """The stored stream, read from the start by a fresh client straight from the server."""
    async with AsyncClient(base_url, api_key=key, backoff=SHORT_BACKOFF) as client:
        items = await asyncio.wait_for(follow(client.live_transcript(sid)), 30)
        call = await client.get_call(sid)
    finals = [(t["seq"], "transcript", t["content"]) for t in call["transcript"]]
    assert finals == [i for i in items if i[1] == "transcript" and i[2].startswith("final")]
    return items


class Producer:
    """Appends a call's events at a steady pace over REST, straight to the server, and
    records what each acknowledged seq holds."""

    def __init__(self, client: AsyncClient, sid: str, pace: float) -> None:
        self.client = client
        self.sid = sid
        self.pace = pace
        self.acked: dict[int, Item] = {}

    async def transcript(self, content: str, **fields: Any) -> None:
        seq = await self.client.append_transcript(self.sid, content, speaker="user", **fields)
        self.acked[seq] = (seq, "transcript", content)

    async def status(self, status: str) -> None:
        seq = await self.client.set_status(self.sid, status)
        self.acked[seq] = (seq, "call_status", status)

    async def run(self, finals: int, *, partials: int = 0) -> None:
        """``finals`` segments (each after ``partials`` interim results), a status change
        every so often, then ``completed``."""
        every = max(finals // len(STATUSES), 1)
        for n in range(finals):
            for p in range(partials):
                await self.transcript(f"partial {n}.{p}", is_final=False, segment_id=f"s{n}")
            await self.transcript(
                f"final {n}", segment_id=f"s{n}" if partials else None, confidence=0.9
            )
            if n % every == every - 1:
                await self.status(STATUSES[(n // every) % len(STATUSES)])
            await asyncio.sleep(self.pace)  # pacing the producer (load shaping)
        await self.status("completed")


# --------------------------------------------------------------------------- scenario A


async def _follow_under_drops(
    server: ServerProcess,
    tenant: Tenant,
    relay: Relay,
    *,
    seed: int,
    pace: float,
    finals: int,
    partials: int = 0,
) -> tuple[str, list[Item], Producer, Stream[Any]]:
    """A call produced straight to the server while a client follows it through the relay,
    which drops its connections at random: (sid, what the client got, producer, stream)."""
    sid = new_sid()
    async with (
        AsyncClient(server.base_url, api_key=tenant.rw) as direct,
        AsyncClient(
            relay.base_url, api_key=tenant.read, backoff=SHORT_BACKOFF, keepalive=KEEPALIVE
        ) as proxied,
    ):
        await direct.create_call(sid)
        producer = Producer(direct, sid, pace=pace)
        stream = proxied.live_transcript(sid)
        received = asyncio.create_task(follow(stream))
        relay.drop_at_random(random.Random(seed), 0.1, 0.5)
        await producer.run(finals, partials=partials)
        got = await asyncio.wait_for(received, 30)
    return sid, got, producer, stream


async def test_random_drops_the_client_sees_the_stored_stream_exactly(
    server: ServerProcess, tenant_a: Tenant, relay_to: Callable[..., Awaitable[Relay]]
) -> None:
    """With the relay dropping the client's connections at random while 300 finals and some
    statuses are appended, the client's events equal the stored stream exactly."""
    relay = await relay_to()
    sid, got, producer, stream = await _follow_under_drops(
        server, tenant_a, relay, seed=20260119, pace=0.015, finals=300
    )
    stored = await stored_stream(server.base_url, tenant_a.rw, sid)
    assert got == stored
    assert [seq for seq, _, _ in got] == list(range(1, len(got) + 1)), "no seq skipped"
    assert got[0] == (1, "call_status", "in-progress"), "the initial status, stored at creation"
    assert got[1:] == [producer.acked[seq] for seq in sorted(producer.acked)]
    assert stream.reconnects >= 5, f"only {stream.reconnects} reconnections ({relay.drops} drops)"


async def test_random_drops_with_partials_every_final_and_status_once_in_order(
    server: ServerProcess, tenant_a: Tenant, relay_to: Callable[..., Awaitable[Relay]]
) -> None:
    """With interim results too, under random drops every final and status arrives exactly once
    and in order, seqs strictly increase, and each event is what was stored at its seq."""
    relay = await relay_to()
    sid, got, producer, stream = await _follow_under_drops(
        server, tenant_a, relay, seed=7, pace=0.02, finals=150, partials=2
    )
    seqs = [seq for seq, _, _ in got]
    assert seqs == sorted(set(seqs)), "strictly increasing"
    assert all(producer.acked.get(seq) == i for i, seq in zip(got, seqs, strict=True) if seq > 1)
    settled = [i for i in got if i[1] == "call_status" or i[2].startswith("final")]
    stored = await stored_stream(server.base_url, tenant_a.rw, sid)
    assert settled == [i for i in stored if i[1] == "call_status" or i[2].startswith("final")]
    assert len([i for i in settled if i[1] == "transcript"]) == 150
    finals_seen: set[str] = set()
    for _, kind, content in got:  # a partial never follows its segment's final
        if kind == "transcript" and content.startswith("final"):
            finals_seen.add(content.split()[1])
        elif kind == "transcript":
            assert content.split()[1].split(".")[0] not in finals_seen, content
    assert stream.reconnects >= 5, f"only {stream.reconnects} reconnections ({relay.drops} drops)"


# --------------------------------------------------------------------------- scenario B


class Backend:
    """Which server is up, for a producer that follows it across a restart."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        self.server = server
        self.key = key
        self.up = asyncio.Event()
        self.up.set()

    def client(self) -> AsyncClient:
        return AsyncClient(self.server.base_url, api_key=self.key, timeout=5.0)


async def test_server_killed_and_restarted_the_client_sees_the_stored_stream_exactly(
    tmp_path: Path, relay_to: Callable[..., Awaitable[Relay]]
) -> None:
    """SIGKILL the server mid-call and start another on the same data: behind the relay,
    which also drops connections, the client's events equal the stored stream exactly."""
    data = tmp_path / "data"
    first = ServerProcess(data_dir=data)
    await asyncio.to_thread(first.start)
    servers = [first]
    try:
        tenant = await asyncio.to_thread(first.create_tenant, "restarts")
        backend = Backend(first, tenant.rw)
        relay = await relay_to(first.port)
        sid = new_sid()
        acked: dict[int, Item] = {}
        total = 200

        async def append(content: str) -> None:
            """Append once: retried across the restart; a send that failed might have been
            stored, so look before sending it again."""
            uncertain = False
            while True:
                await backend.up.wait()
                async with backend.client() as client:
                    try:
                        if uncertain:
                            call = await client.get_call(sid)
                            if content in {t["content"] for t in call["transcript"]}:
                                return  # stored after all, just never acknowledged
                        seq = await client.append_transcript(sid, content, speaker="user")
                    except ConnectionFailedError:
                        uncertain = True
                        continue
                acked[seq] = (seq, "transcript", content)
                return

        async def produce() -> None:
            for n in range(total):
                await append(f"final {n}")
                await asyncio.sleep(0.01)  # pacing the producer (load shaping)

        async def restart() -> None:
            await progress_at(total // 3)
            backend.up.clear()
            await asyncio.to_thread(backend.server.kill)  # SIGKILL
            relay.drop_all()
            second = ServerProcess(data_dir=data)
            servers.append(second)
            await asyncio.to_thread(second.start)
            relay.backend_port = second.port
            backend.server = second
            backend.up.set()

        reached: dict[int, asyncio.Event] = {}

        async def progress_at(n: int) -> None:
            reached.setdefault(n, asyncio.Event())
            await reached[n].wait()

        async with backend.client() as client:
            await client.create_call(sid)
        async with AsyncClient(
            relay.base_url, api_key=tenant.read, backoff=SHORT_BACKOFF, keepalive=KEEPALIVE
        ) as proxied:
            stream = proxied.live_transcript(sid)
            received: list[Item] = []

            async def consume() -> list[Item]:
                async with stream:
                    async for event in stream:
                        if isinstance(event, StatusEvent) and event.seq is None:
                            assert not received, "one snapshot, first"
                            continue
                        received.append(item(event))
                        done = sum(1 for i in received if i[1] == "transcript")
                        if done in reached:
                            reached[done].set()
                return received

            reached[total // 3] = asyncio.Event()
            consumer = asyncio.create_task(consume())
            relay.drop_at_random(random.Random(99), 0.2, 0.6)
            work = asyncio.gather(produce(), restart())
            await asyncio.wait({work, consumer}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            if consumer.done():
                work.cancel()
                raise AssertionError(f"the stream ended early: {consumer.result()}")
            if not work.done():
                work.cancel()
                raise AssertionError("the producer did not finish within 60 s")
            await work
            async with backend.client() as client:
                await client.set_status(sid, "completed")
            got = await asyncio.wait_for(consumer, 30)
        stored = await stored_stream(backend.server.base_url, tenant.rw, sid)
        assert got == stored
        assert [seq for seq, _, _ in got] == list(range(1, len(got) + 1))
        contents = [c for _, kind, c in got if kind == "transcript"]
        assert contents == [f"final {n}" for n in range(total)], "each append stored once"
        assert all(got[seq - 1] == acked[seq] for seq in acked)
        assert stream.reconnects >= 2
        assert len(servers) == 2
    finally:
        for srv in servers:
            await asyncio.to_thread(srv.stop)


# --------------------------------------------------------------------------- the loop itself


async def test_accepted_connections_reset_the_failure_count() -> None:
    """A connection that the server accepts, even one that drops before any new event, resets
    the count of failed attempts, so max_attempts only bounds failures in a row."""
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        hello = {"type": "connection_established", "call_sid": "CA1", "epoch": "e"}
        await ws.send(orjson.dumps(hello).decode())
        await ws.send(orjson.dumps({"type": "call_status", "status": "in-progress"}).decode())
        if connections == 1:
            await ws.send(orjson.dumps({"type": "call_status", "seq": 1, "status": "x"}).decode())
        if connections < 6:
            await ws.close(1011)  # retry: nothing new on this connection
            return
        await ws.send(
            orjson.dumps({"type": "call_status", "seq": 2, "status": "completed"}).decode()
        )
        await ws.close(1000)

    async with serve(handler, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        backoff = Backoff(initial=0.01, maximum=0.02, max_attempts=2)
        async with AsyncClient(f"http://127.0.0.1:{port}", backoff=backoff) as client:
            stream = client.live_transcript("CA1")
            events = await asyncio.wait_for(follow(stream), 10)
    assert events == [(1, "call_status", "x"), (2, "call_status", "completed")]
    assert stream.reconnects == 5 and connections == 6
    # Failures in a row still end it.
    async with serve(handler, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
    async with AsyncClient(f"http://127.0.0.1:{port}", backoff=backoff) as client:
        with pytest.raises(ReconnectFailed):
            await asyncio.wait_for(follow(client.live_transcript("CA1")), 10)


async def test_an_unreachable_server_is_warned_of_at_once_and_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two outages (503s) around a dropped connection: the first failed attempt of each
    logs one WARNING naming the address, before the stream waits to retry; the hook hears
    of every retry, and the stream carries on to the end."""
    caplog.set_level(logging.INFO, logger="scribeline.client")
    connections = 0

    def down_or_up(connection: ServerConnection, request: Request) -> Response | None:
        nonlocal connections
        connections += 1
        return connection.respond(503, "down\n") if connections in (1, 2, 4, 5) else None

    async def handler(ws: ServerConnection) -> None:
        hello = {"type": "connection_established", "call_sid": "CA1", "epoch": "e"}
        await ws.send(orjson.dumps(hello).decode())
        await ws.send(orjson.dumps({"type": "call_status", "status": "in-progress"}).decode())
        if connections == 3:
            await ws.send(orjson.dumps({"type": "call_status", "seq": 1, "status": "x"}).decode())
            await ws.close(1011)  # lost: a reconnection, not an unreachable server
            return
        status = {"type": "call_status", "seq": 2, "status": "completed"}
        await ws.send(orjson.dumps(status).decode())
        await ws.close(1000)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    heard: list[tuple[bool, int, int]] = []  # (lost, failures, warnings logged by then)

    def on_retry(notice: RetryNotice) -> None:
        heard.append((notice.lost, notice.failures, len(warnings())))
        assert "token" not in notice.address

    async with serve(handler, "127.0.0.1", 0, process_request=down_or_up) as fake:
        port = fake.sockets[0].getsockname()[1]
        backoff = Backoff(initial=0.01, maximum=0.02)
        base = f"http://127.0.0.1:{port}"
        async with AsyncClient(base, backoff=backoff, on_retry=on_retry) as client:
            events = await asyncio.wait_for(follow(client.live_transcript("CA1")), 10)
    assert events == [(1, "call_status", "x"), (2, "call_status", "completed")]
    assert heard == [(False, 1, 1), (False, 2, 1), (True, 1, 1), (False, 1, 2), (False, 2, 2)]
    first, second = warnings()
    assert first == second, "each outage is told the same way"
    assert first.startswith(f"cannot reach ws://127.0.0.1:{port}/live-transcript/CA1 ")
    assert "HTTP 503" in first and first.endswith("retrying")


async def test_a_stalled_connection_is_dropped_and_resumed_promptly(
    server: ServerProcess, tenant_a: Tenant, relay_to: Callable[..., Awaitable[Relay]]
) -> None:
    """A connection that goes silent (the relay swallows its bytes, no close) is given up after
    the stall timeout and resumed at once, without waiting for a closing handshake."""
    relay = await relay_to()
    sid = new_sid()
    keepalive = KeepAlive(ping_interval=0.2, stall_timeout=0.6)
    async with (
        AsyncClient(server.base_url, api_key=tenant_a.rw) as direct,
        AsyncClient(
            relay.base_url, api_key=tenant_a.read, keepalive=keepalive, backoff=SHORT_BACKOFF
        ) as proxied,
    ):
        await direct.create_call(sid)
        stream = proxied.live_transcript(sid)
        async with stream:
            assert (await stream.__anext__()).seq is None
            assert (await stream.__anext__()).seq == 1
            relay.black_hole_all()
            await direct.append_transcript(sid, "after the stall", speaker="user")
            started = time.monotonic()
            event = await asyncio.wait_for(stream.__anext__(), 10)
            resumed = time.monotonic() - started
            assert isinstance(event, TranscriptEvent) and event.seq == 2
            await direct.set_status(sid, "completed")
            rest = [item(e) async for e in stream]
    assert rest == [(3, "call_status", "completed")]
    assert stream.reconnects == 1
    assert resumed < 0.6 + 1.0, f"resumed after {resumed:.2f} s"


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    return bytes([0x80 | opcode, len(payload)]) + payload


async def test_a_connection_closed_before_the_subscriptions_are_sent_is_retried() -> None:
    """When the server closes (1011) in the same packet as its handshake answer, the events
    stream's subscribing finds the connection closed and reconnects instead of failing."""
    attempts = 0

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept_key = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        answer = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key + b"\r\n\r\n"
        )
        if attempts < 3:
            writer.write(answer + frame(0x8, (1011).to_bytes(2, "big")))
        else:
            status = {"type": "call_status", "call_sid": "CA1", "seq": 4, "status": "completed"}
            writer.write(
                answer
                + frame(0x1, b'{"type":"connection_established"}')
                + frame(0x1, orjson.dumps(status))
                + frame(0x8, (1000).to_bytes(2, "big"))
            )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read(65536)  # the client's close frame (or subscriptions)
        writer.close()  # a server closes TCP after the closing handshake

    fake = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = fake.sockets[0].getsockname()[1]
    try:
        backoff = Backoff(initial=0.01, maximum=0.02)
        async with AsyncClient(f"http://127.0.0.1:{port}", backoff=backoff) as client:
            stream = client.events(["call_status"])
            async with stream:
                events = await asyncio.wait_for(_all(stream), 10)
    finally:
        fake.close()
        await fake.wait_closed()
    assert [(e.seq, e.status) for e in events] == [(4, "completed")]
    assert attempts == 3 and stream.reconnects == 2


async def _all(stream: Stream[Any]) -> list[Any]:
    return [event async for event in stream]
