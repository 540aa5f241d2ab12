"""Redis pub/sub between the nodes of a deployment (``redis://host:port/db``).

Publishing goes over one pipelined command connection (:mod:`.redis_pipe`):
a batch of events costs one round trip. Receiving runs on one pub/sub
connection per node, owned by a supervisor task that:

* reads and never waits for the hub: messages go to a bounded inbox that a
  dispatcher task drains into ``deliver``; when the inbox is full the message
  is dropped, counted, and ``on_gap`` is called once the dispatcher catches up;
* catches every connection error, reconnects with backoff, re-subscribes
  every channel still wanted, counts the reconnect and calls ``on_gap``
  (Redis pub/sub is at-most-once: whatever was published meanwhile is lost,
  and the hub repairs it from storage). While Redis stays unreachable it calls
  ``on_gap`` after every failed attempt, so the hub keeps serving from storage;
* probes an idle connection: after ``probe_interval`` seconds with nothing
  received it publishes to a channel only this node subscribes; if nothing
  arrives within ``timeout`` the connection is declared dead and restarted.
  This is what notices a half-open socket (a proxy or a failover that silently
  stops forwarding), which TCP and redis-py's health checks do not.

Channels live under a prefix (``sl:`` by default) so a shared Redis keeps
Scribeline's channels apart from other users'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.exceptions import RedisError, ResponseError

from scribeline.broker.base import Broker, BrokerUnavailable, Deliver, OnGap
from scribeline.broker.redis_pipe import CommandPipe, describe

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

#: Channels per SUBSCRIBE command when re-subscribing (as centrifuge does).
SUBSCRIBE_BATCH = 512
#: Reconnect backoff, doubled after every failed attempt (with jitter).
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
#: Messages read but not yet delivered that a node holds before it drops.
INBOX_MESSAGES = 10_000
#: Deliveries between two yields of the dispatcher to the event loop.
DISPATCH_SLICE = 512


class StaleConnection(ConnectionError):
    """The pub/sub connection stopped delivering (no answer to a probe)."""


class RedisBroker(Broker):
    """Redis pub/sub with reconnects, an idle probe and a bounded inbox."""

    def __init__(
        self,
        url: str,
        *,
        probe_interval: float = 15.0,
        timeout: float = 3.0,
        inbox_messages: int = INBOX_MESSAGES,
        prefix: str = "sl:",
    ) -> None:
        kwargs: dict[str, Any] = dict(parse_url(url))
        self._connection_class: type[AbstractConnection] = kwargs.pop(
            "connection_class", Connection
        )
        # No socket timeout of redis-py's own: a pub/sub read blocks for as long
        # as the channel is quiet; every wait here is bounded by ``timeout``.
        kwargs.update(
            protocol=2,
            socket_timeout=None,
            socket_connect_timeout=timeout,
            socket_keepalive=True,
        )
        self._kwargs = kwargs
        self._where = f"{kwargs.get('host', kwargs.get('path', ''))}:{kwargs.get('port', '')}"
        self._probe_interval = probe_interval
        self._timeout = timeout
        self._inbox_limit = inbox_messages
        self._prefix = prefix
        self._probe_raw = f"{prefix}probe:{uuid.uuid4().hex}".encode()
        self._pipe = CommandPipe(lambda: self._connection("scribeline-pub"), timeout)

        self._deliver: Deliver | None = None
        self._on_gap: OnGap | None = None
        self._names: dict[bytes, str] = {}  # Redis channel -> channel, for wanted ones
        self._live: AbstractConnection | None = None  # the pub/sub connection, once connected
        self._up = False  # subscribed to everything wanted
        self._came_up = False  # the current session got as far as subscribing
        self._reader: asyncio.Task[None] | None = None
        self._confirm: dict[bytes, list[asyncio.Future[None]]] = {}
        self._inbox: deque[tuple[bytes, bytes]] = deque()
        self._mail = asyncio.Event()
        self._overflowed = False
        self._received_at = 0.0
        self._probe_waiter: asyncio.Future[None] | None = None
        self._ever_lost = False
        self._recorded = False  # a subscribe recorded while not connected
        self._failing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._first: asyncio.Future[None] | None = None
        self._reconnects = 0
        self._dropped = 0
        self._stale = 0

    # -- the Broker interface --------------------------------------------------

    async def start(self, deliver: Deliver, on_gap: OnGap | None = None) -> None:
        """Start receiving; waits (at most ``timeout``) for the first connection
        but does not fail without one: the node serves, degraded, meanwhile."""
        loop = asyncio.get_running_loop()
        self._deliver, self._on_gap = deliver, on_gap
        self._first = loop.create_future()
        self._tasks = [loop.create_task(self._dispatch()), loop.create_task(self._run())]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(self._first)

    async def publish(self, channel: str, payload: bytes) -> None:
        await self.publish_many(((channel, payload),))

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        prefix = self._prefix
        replies = await self._pipe.call(
            [("PUBLISH", prefix + channel, payload) for channel, payload in messages]
        )
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise BrokerUnavailable(f"Redis refused a publish: {describe(reply)}")

    async def subscribe(self, channel: str) -> None:
        raw = (self._prefix + channel).encode()
        self._names[raw] = channel
        conn = self._live
        if conn is None:
            self._recorded = True  # the next connection subscribes it, then calls on_gap
            return
        confirmed = self._expect(raw)
        try:
            async with asyncio.timeout(self._timeout):
                await conn.send_command("SUBSCRIBE", raw, check_health=False)
                await confirmed
        except (RedisError, OSError, TimeoutError):
            self._restart(conn)  # its replacement subscribes it, then calls on_gap

    async def unsubscribe(self, channel: str) -> None:
        raw = (self._prefix + channel).encode()
        self._names.pop(raw, None)  # from now on nothing of it is delivered
        conn = self._live
        if conn is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await conn.send_command("UNSUBSCRIBE", raw, check_health=False)
        except (RedisError, OSError, TimeoutError):
            self._restart(conn)

    async def ping(self) -> None:
        if not self._up:
            raise BrokerUnavailable(f"Redis pub/sub at {self._where} is reconnecting")
        (reply,) = await self._pipe.call([("PING",)])
        if isinstance(reply, ResponseError):
            raise BrokerUnavailable(f"Redis answered PING with an error: {describe(reply)}")

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._pipe.close()
        self._names.clear()
        self._inbox.clear()
        self._deliver = self._on_gap = None

    def counters(self) -> dict[str, int]:
        return {
            "reconnects": self._reconnects,
            "dropped": self._dropped,
            "stale": self._stale,
            "publish_failures": self._pipe.failures,
        }

    # -- the pub/sub connection --------------------------------------------------

    def _connection(self, name: str) -> AbstractConnection:
        return self._connection_class(**self._kwargs, client_name=name)

    async def _run(self) -> None:
        """Keep one pub/sub connection alive for as long as the broker runs."""
        delay = BACKOFF_MIN
        while True:
            self._came_up = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure means: reconnect
                # Said once per outage; the attempts that follow are debug noise.
                level = logging.DEBUG if self._failing else logging.WARNING
                log.log(level, "Redis pub/sub at %s lost: %s", self._where, describe(exc))
                self._failing = True
            if self._came_up:
                # It had been working (_up is already False here: the reader's
                # cleanup ran first): reconnect quickly, not after the last wait.
                delay = BACKOFF_MIN
            self._up = False
            self._ever_lost = True
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            self._gap()  # while Redis is away the hub keeps serving from storage
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        """Connect, subscribe to every wanted channel, then watch until it fails."""
        conn = self._connection("scribeline-sub")
        reader: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(self._timeout):
                await conn.connect()  # type: ignore[no-untyped-call]
            reader = asyncio.get_running_loop().create_task(self._read(conn))
            self._reader = reader
            self._live = conn  # from here, subscribe() sends on this connection too
            await self._subscribe_all(conn)
            self._up = self._came_up = True
            self._failing = False
            self._received_at = asyncio.get_running_loop().time()
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            if self._ever_lost:
                self._reconnects += 1
                log.info("Redis pub/sub at %s reconnected", self._where)
            if self._ever_lost or self._recorded:
                # Published while we were away, or before a subscription recorded
                # meanwhile (even during the first connect) took effect: lost; the
                # hub repairs.
                self._recorded = False
                self._gap()
            await self._watch(reader)
        finally:
            self._live = None
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            self._reader = None
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _subscribe_all(self, conn: AbstractConnection) -> None:
        raws = [self._probe_raw, *self._names]
        confirmed = [self._expect(raw) for raw in raws]
        # Large re-subscriptions get time in proportion (10k channels ~ 1 s locally).
        batches: list[list[str | bytes]] = [
            ["SUBSCRIBE", *raws[start : start + SUBSCRIBE_BATCH]]
            for start in range(0, len(raws), SUBSCRIBE_BATCH)
        ]
        async with asyncio.timeout(self._timeout + len(raws) / 10_000):
            # One write, before any await: an unsubscribe() that comes later is
            # sent after it, so it cannot be undone by a late batch.
            await conn.send_packed_command(conn.pack_commands(batches), check_health=False)
            await asyncio.gather(*confirmed)

    async def _read(self, conn: AbstractConnection) -> None:
        """Read every reply of the pub/sub connection; never waits for the hub."""
        loop = asyncio.get_running_loop()
        inbox, limit, mail = self._inbox, self._inbox_limit, self._mail
        try:
            while True:
                # Errors leave the socket to the session's clean-up, so a concurrent
                # subscribe() fails on it rather than silently reconnecting it.
                reply = await conn.read_response(disconnect_on_error=False)
                self._received_at = loop.time()
                waiter = self._probe_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)  # anything received proves the connection alive
                kind = reply[0]
                if kind == b"message":
                    if len(inbox) >= limit:
                        self._dropped += 1
                        self._overflowed = True
                    else:
                        inbox.append((reply[1], reply[2]))
                    mail.set()
                elif kind == b"subscribe":
                    for future in self._confirm.pop(reply[1], ()):
                        if not future.done():
                            future.set_result(None)
        finally:
            if self._live is conn:
                self._live = None
            self._up = False
            confirm, self._confirm = self._confirm, {}
            for futures in confirm.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(BrokerUnavailable("Redis pub/sub connection lost"))
                        future.exception()  # retrieved: its waiter may be gone

    async def _watch(self, reader: asyncio.Task[None]) -> None:
        """Return (raise) when the connection fails or stops answering probes."""
        loop = asyncio.get_running_loop()
        while True:
            idle_until = self._received_at + self._probe_interval
            now = loop.time()
            if now < idle_until:
                await asyncio.wait({reader}, timeout=idle_until - now)
                _raise_if_done(reader)
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._probe_waiter = waiter
            sent = loop.time()
            with contextlib.suppress(BrokerUnavailable):
                # A failed publish says the command path is broken; whether this
                # connection still receives is what the deadline below decides.
                await self._pipe.call([("PUBLISH", self._probe_raw, b"")])
            remaining = sent + self._timeout - loop.time()
            if not waiter.done() and remaining > 0:
                await asyncio.wait({reader, waiter}, timeout=remaining)
            self._probe_waiter = None
            _raise_if_done(reader)
            if not waiter.done():
                waiter.cancel()
                self._stale += 1
                raise StaleConnection(f"no answer to a probe within {self._timeout:g} s")

    def _expect(self, raw: bytes) -> asyncio.Future[None]:
        """A future resolved when Redis confirms a subscription to ``raw``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(raw, []).append(future)
        return future

    def _restart(self, conn: AbstractConnection) -> None:
        """Drop ``conn`` (if still current): the supervisor reconnects."""
        if self._live is conn and self._reader is not None:
            self._reader.cancel()

    # -- handing messages to the hub -------------------------------------------

    async def _dispatch(self) -> None:
        inbox, mail, names = self._inbox, self._mail, self._names
        while True:
            await mail.wait()
            mail.clear()
            delivered = 0
            while inbox:
                raw, payload = inbox.popleft()
                channel = names.get(raw)  # None: unsubscribed meanwhile, or the probe
                if channel is not None and self._deliver is not None:
                    try:
                        self._deliver(channel, payload)
                    except Exception:
                        log.exception("delivering a message of %s failed", channel)
                delivered += 1
                if delivered % DISPATCH_SLICE == 0:
                    await asyncio.sleep(0)  # let the reader keep up with the socket
            if self._overflowed:
                self._overflowed = False
                log.warning("Redis inbox full: messages dropped; positions are re-checked")
                self._gap()

    def _gap(self) -> None:
        if self._on_gap is None:
            return
        try:
            self._on_gap()
        except Exception:
            log.exception("the broker's gap callback failed")


def _raise_if_done(reader: asyncio.Task[None]) -> None:
    if not reader.done():
        return
    if reader.cancelled():
        raise ConnectionError("pub/sub connection dropped")
    exc = reader.exception()
    raise exc if exc is not None else ConnectionError("pub/sub connection closed")
