"""Subscriber clients of ``/live-transcript/{sid}`` and the worker process that holds many.

Three interchangeable client implementations (``--client``):

- ``raw``: :mod:`bench.rawws`, frames parsed in ``data_received`` (the default: cheapest);
- ``aiohttp``: ``ClientSession.ws_connect(compress=0)`` and a reader task per socket;
- ``websockets``: ``websockets.asyncio.client.connect(compression=None)``, a reader task each.

Every subscriber checks that seqs arrive without gaps or duplicates and samples
publish-to-deliver latency: the publisher puts ``time.time_ns()`` first in each
transcript's ``content``, the subscriber subtracts it from the time the frame's
bytes arrived. Samples are spread over subscribers and events: subscriber ``i``
samples the events with ``(seq + i) % sample_every == 0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal, Protocol

import orjson

from bench import rawws
from bench.workers import Message, pipe_recv, raise_nofile, run_async

__all__ = [
    "CLIENT_KINDS",
    "ClientKind",
    "Link",
    "SubscribeJob",
    "Tracker",
    "open_link",
    "stamp_content",
    "subscribe_worker",
]

ClientKind = Literal["raw", "aiohttp", "websockets"]
CLIENT_KINDS: tuple[ClientKind, ...] = ("raw", "aiohttp", "websockets")

#: Called with each text message and the wall-clock time (ns) it arrived.
OnMessage = Callable[[bytes | str, int], None]

_FILLER = "so the agent can look that up for you right now, one moment please"


def stamp_content(index: int) -> str:
    """A transcript's content that starts with its send time (ns since the epoch)."""
    return f"{time.time_ns()} #{index} {_FILLER}"


class Link(Protocol):
    """One open client connection, whatever the implementation."""

    closed: asyncio.Future[int | None]

    async def close(self, code: int = 1000) -> int | None: ...

    def abort(self) -> None: ...


class _Reader:
    """A Link for the task-based libraries (aiohttp, websockets)."""

    def __init__(self, closer: Any, task: asyncio.Task[int | None]) -> None:
        self._closer = closer
        self._task = task
        self.closed: asyncio.Future[int | None] = task

    async def close(self, code: int = 1000) -> int | None:
        try:
            await self._closer(code=code)
            return await self._task  # the reader ends once the connection has closed
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        # Stops reading; the socket itself goes when the session or the process does.
        self._task.cancel()


async def _aiohttp_link(session: Any, url: str, on_text: OnMessage) -> Link:
    from aiohttp import WSMsgType

    ws = await session.ws_connect(url, compress=0, autoping=True, max_msg_size=0)

    async def read() -> int | None:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                on_text(msg.data, time.time_ns())
        code: int | None = ws.close_code
        return code

    return _Reader(ws.close, asyncio.get_running_loop().create_task(read()))


async def _websockets_link(url: str, on_text: OnMessage) -> Link:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    ws = await connect(url, compression=None, ping_interval=None, max_size=None, open_timeout=30)

    async def read() -> int | None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                on_text(message, time.time_ns())
        code: int | None = ws.close_code
        return code

    return _Reader(ws.close, asyncio.get_running_loop().create_task(read()))


async def open_link(
    kind: ClientKind, host: str, port: int, path: str, on_text: OnMessage, session: Any = None
) -> Link:
    """Connect one client of ``kind`` (aiohttp needs a ``ClientSession``)."""
    if kind == "raw":
        return await rawws.connect(host, port, path, on_text)
    url = f"ws://{host}:{port}{path}"
    if kind == "aiohttp":
        return await _aiohttp_link(session, url, on_text)
    return await _websockets_link(url, on_text)


@dataclass(slots=True)
class Tracker:
    """What one subscriber saw."""

    index: int
    sid: str
    head: int  # the call's last seq before the subscriber joined (its history)
    samples: list[int]  # shared per worker: latency in µs
    sample_every: int
    last_seq: int = 0
    deliveries: int = 0  # live events (seq > head)
    gaps: int = 0
    duplicates: int = 0
    established: bool = False
    first_ns: int = 0
    last_ns: int = 0
    ready: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def on_text(self, payload: bytes | str, now_ns: int) -> None:
        msg = orjson.loads(payload)
        seq = msg.get("seq")
        if seq is None:  # connection_established, the status snapshot, pongs, errors
            if msg.get("type") == "connection_established":
                self.established = True
                if self.head == 0 and not self.ready.done():
                    # No history to wait for (a reference-server call has no event yet).
                    self.ready.set_result(None)
            elif msg.get("type") == "error" and not self.ready.done():
                self.ready.set_exception(RuntimeError(f"server error: {msg.get('error')}"))
            return
        if seq <= self.last_seq:
            self.duplicates += 1
            return
        if seq != self.last_seq + 1:
            self.gaps += 1
        self.last_seq = seq
        if seq > self.head:
            self.deliveries += 1
            self.last_ns = now_ns
            if not self.first_ns:
                self.first_ns = now_ns
            if (seq + self.index) % self.sample_every == 0 and msg.get("type") == "transcript":
                sent = int(msg["data"]["content"].partition(" ")[0])
                self.samples.append((now_ns - sent) // 1000)
        if seq >= self.head and not self.ready.done():
            self.ready.set_result(None)


@dataclass(frozen=True, slots=True)
class SubscribeJob:
    """One worker's share of subscribers: one connection per entry of ``sids``."""

    host: str
    port: int
    token: str
    kind: ClientKind
    sids: tuple[str, ...]
    heads: dict[str, int]
    first_index: int = 0
    stride: int = 1  # subscriber i of this job is number first_index + i * stride overall
    concurrency: int = 100
    sample_every: int = 1
    ready_timeout: float = 30.0


def subscribe_worker(pipe: Connection, job: SubscribeJob) -> None:
    """Worker process entry point (see :mod:`bench.workers`)."""
    raise_nofile()
    with contextlib.suppress(EOFError, KeyboardInterrupt, BrokenPipeError):
        run_async(lambda: _subscribe(pipe, job))


async def _subscribe(pipe: Connection, job: SubscribeJob) -> None:
    samples: list[int] = []
    trackers: list[Tracker] = []
    links: list[Link] = []
    errors: Counter[str] = Counter()
    session: Any = None
    if job.kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    gate = asyncio.Semaphore(job.concurrency)

    async def join(i: int, sid: str) -> None:
        index = job.first_index + i * job.stride
        tracker = Tracker(index, sid, job.heads[sid], samples, job.sample_every)
        path = f"/live-transcript/{sid}?token={job.token}"
        async with gate:
            try:
                async with asyncio.timeout(job.ready_timeout):
                    link = await open_link(
                        job.kind, job.host, job.port, path, tracker.on_text, session
                    )
                    links.append(link)
                    await tracker.ready
                trackers.append(tracker)
            except Exception as exc:
                errors[type(exc).__name__ + (f": {exc}" if str(exc) else "")[:120]] += 1

    began = time.monotonic()
    await asyncio.gather(*(join(i, sid) for i, sid in enumerate(job.sids)))
    pipe.send(
        {
            "event": "ready",
            "connected": len(trackers),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(5)),
            "seconds": time.monotonic() - began,
        }
    )
    try:
        while True:
            cmd = await pipe_recv(pipe)
            if cmd["cmd"] == "finish":
                pipe.send(await _finish(cmd, trackers, links, samples))
            elif cmd["cmd"] == "exit":
                break
    finally:
        for link in links:
            link.abort()
        if session is not None:
            await session.close()


def _close_code(done: asyncio.Future[int | None]) -> str:
    if done.cancelled():
        return "cancelled"
    if done.exception() is not None:
        return type(done.exception()).__name__
    return str(done.result())


async def _finish(
    cmd: Message, trackers: list[Tracker], links: list[Link], samples: list[int]
) -> Message:
    """Wait until every subscriber has seen its call's last seq (or time runs out)."""
    last: dict[str, int] = cmd["last"]
    deadline = time.monotonic() + float(cmd.get("timeout", 30.0))
    while time.monotonic() < deadline:
        if all(t.last_seq >= last.get(t.sid, 0) for t in trackers):
            break
        if all(link.closed.done() for link in links):
            break
        await asyncio.sleep(0.02)
    closed = [link for link in links if link.closed.done()]
    codes = Counter(_close_code(link.closed) for link in closed)
    firsts = [t.first_ns for t in trackers if t.first_ns]
    return {
        "event": "result",
        "deliveries": sum(t.deliveries for t in trackers),
        "expected": sum(max(0, last.get(t.sid, 0) - t.head) for t in trackers),
        "behind": sum(t.last_seq < last.get(t.sid, 0) for t in trackers),
        "gaps": sum(t.gaps for t in trackers),
        "duplicates": sum(t.duplicates for t in trackers),
        "closed": len(closed),
        "close_codes": dict(codes),
        "first_ns": min(firsts) if firsts else 0,
        "last_ns": max((t.last_ns for t in trackers), default=0),
        "samples_us": list(samples),
    }
