"""One Redis connection shared by concurrent callers, replies matched in order.

Publishing is the per-event hot path: a pooled connection per call costs a
pool check-out and a health check, and a Redis pipeline object per call costs
more. Here every caller writes its packed commands straight onto one
connection (a write is synchronous, so callers never interleave) and one
reader task hands each caller its replies in the order Redis sends them.

A reply that does not come within ``timeout`` (a dead or blackholed
connection) fails every waiting caller with ``BrokerUnavailable`` and drops
the connection; after such a timeout, calls fail at once for ``retry_delay``
seconds instead of each waiting for a timeout of its own. A connection that
is closed or refused is simply tried again by the next call (that fails fast
by itself). Known limit: until then a call waits for the reply, or for a
connect under way, up to ``timeout`` seconds. Appends never do:
``ingest.publish.Publisher`` queues their events and one task sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from scribeline.broker.base import BrokerUnavailable
from scribeline.log_context import detached

__all__ = ["CommandPipe", "describe"]

log = logging.getLogger(__name__)

#: Least seconds between two warnings about failed connections.
LOG_EVERY = 5.0

#: A command and its arguments, as redis-py packs them.
Command = Sequence[str | bytes | int]


class _Waiter:
    __slots__ = ("future", "remaining", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.remaining = count
        self.replies: list[Any] = []


class CommandPipe:
    """Sends commands from many tasks over one connection (pipelining)."""

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        timeout: float,
        retry_delay: float = 1.0,
    ) -> None:
        self._make = connect
        self._timeout = timeout
        self._retry_delay = retry_delay
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: deque[_Waiter] = deque()
        self._connecting = asyncio.Lock()
        self._retry_at = 0.0
        self._logged_at = float("-inf")
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()
        #: Connections that failed or replies that came too late.
        self.failures = 0

    async def call(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` in order; their replies (a ``ResponseError`` is a reply).
        ``BrokerUnavailable`` if the connection fails or a reply is late."""
        conn = self._conn if self._reader is not None else None
        if conn is None:
            conn = await self._connect()
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), len(commands))
        # No await between picking the connection and queueing the waiter: the
        # reader matches replies to waiters by position.
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                return await waiter.future
        except (RedisError, OSError, TimeoutError) as exc:
            self._fail(conn, exc)
            raise BrokerUnavailable(f"Redis did not answer: {describe(exc)}") from None

    async def _connect(self) -> AbstractConnection:
        if self._closed:
            raise BrokerUnavailable("the broker is closed")
        async with self._connecting:
            if self._conn is not None and self._reader is not None:
                return self._conn
            if asyncio.get_running_loop().time() < self._retry_at:
                raise BrokerUnavailable("Redis is unavailable (retrying shortly)")
            conn = self._make()
            try:
                async with asyncio.timeout(self._timeout):
                    await conn.connect()  # type: ignore[no-untyped-call]
            except (RedisError, OSError, TimeoutError) as exc:
                self._down(exc)
                await _disconnect(conn)
                raise BrokerUnavailable(f"cannot connect to Redis: {describe(exc)}") from None
            self._conn = conn
            # It serves every caller from now on: no request's id on its lines.
            loop = asyncio.get_running_loop()
            self._reader = loop.create_task(self._read(conn), context=detached())
            return conn

    async def _read(self, conn: AbstractConnection) -> None:
        try:
            while True:
                try:
                    reply = await conn.read_response(disconnect_on_error=False)
                except ResponseError as exc:
                    reply = exc  # an error reply is still the next reply in line
                waiter = self._waiting[0]
                waiter.replies.append(reply)
                waiter.remaining -= 1
                if waiter.remaining == 0:
                    self._waiting.popleft()
                    if not waiter.future.done():  # its caller may have gone away
                        waiter.future.set_result(waiter.replies)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure ends this connection
            self._fail(conn, exc)

    def _down(self, exc: BaseException) -> None:
        """Count a failure; after a timeout, calls fail at once for ``retry_delay``."""
        self.failures += 1
        now = asyncio.get_running_loop().time()
        if isinstance(exc, (TimeoutError, RedisTimeout)):
            self._retry_at = now + self._retry_delay
        if now - self._logged_at >= LOG_EVERY:  # an outage fails every call: say it once
            self._logged_at = now
            log.warning("Redis command connection failed: %s", describe(exc))

    def _fail(self, conn: AbstractConnection, exc: BaseException) -> None:
        """Drop ``conn`` (if it is still the current one): every caller waiting on it fails."""
        if conn is not self._conn:
            return  # already dropped
        self._down(exc)
        reader, self._reader, self._conn = self._reader, None, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if not waiter.future.done():
                waiter.future.set_exception(BrokerUnavailable("the Redis connection failed"))
                waiter.future.exception()  # retrieved: a caller gone away must not log it
        task = asyncio.get_running_loop().create_task(_disconnect(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        self._closed = True
        conn, reader = self._conn, self._reader
        self._conn = self._reader = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for waiter in self._waiting:
            if not waiter.future.done():
                waiter.future.set_exception(BrokerUnavailable("the broker is closed"))
                waiter.future.exception()
        self._waiting.clear()
        if conn is not None:
            await _disconnect(conn)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def _disconnect(conn: AbstractConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.disconnect(nowait=True)


def describe(exc: BaseException) -> str:
    """One line about a failure, never a credential (redis-py errors name host:port only)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
