"""One server-side WebSocket: bounded outgoing bytes, ordered by seq, liveness.

Outgoing frames are pre-built bytes written straight to the socket's
transport (DESIGN.md, "Stack"); the transport's write buffer is the
connection's one bounded queue. Once it holds more than ``limit`` bytes the
client is not keeping up: it is closed with 1013 and resumes with ``since``,
and nobody else ever waits for it.

While a subscriber joins a stream, live events are held in ``pending`` (also
bounded) until history has been sent; ``go_live`` then sends the held events
that history did not cover. ``last_seq`` makes every seq go out at most once.

A connection opened with a credential knows the API key it came from
(``key_id``: the key itself, or the key or dashboard session an access,
captions or capability token was minted from); the registry indexes
connections by it, so revoking the key closes them all (``Registry.close_key``).
A connection whose endpoint answers every message it reads (``acknowledges``:
the producers) first stops reading and lets the answers to what it read go
out, so that every message stored has been acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractStreamWriter

from scribeline.errors import (
    AuthenticationFailed,
    CloseCode,
    InvalidMessage,
    RateLimited,
    ScribelineError,
    SlowConsumer,
    close_for,
)
from scribeline.protocols.frames import text_frame

if TYPE_CHECKING:
    from scribeline.registry import Registry

__all__ = ["Connection", "Inbound", "Renderer", "TokenBucket"]

log = logging.getLogger(__name__)

#: How a client too far behind is closed (1013, ``slow_consumer``): it resumes by seq.
_SLOW_CLOSE = close_for(SlowConsumer("The client is not reading fast enough"))
#: What a connection is told when the key that authenticated it is revoked.
_REVOKED = AuthenticationFailed("The credential was revoked")

#: Renders an error as the endpoint's error message.
Renderer = Callable[[ScribelineError], bytes]


class TokenBucket:
    """Allows ``rate`` messages per second on average, bursts up to ``rate``."""

    __slots__ = ("_capacity", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._stamp = time.monotonic()

    def take(self) -> bool:
        """Take a token if one is available."""
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def reserve(self) -> float:
        """Take a token, borrowing it if need be; seconds until it is really due."""
        if self.take():
            return 0.0
        self._tokens -= 1.0
        return -self._tokens / self._rate


@dataclass(frozen=True, slots=True)
class Inbound:
    """A data message from the client."""

    data: str | bytes
    is_text: bool

    def text(self) -> str:
        """The message's text; a binary frame is an invalid message in every format."""
        if not self.is_text or not isinstance(self.data, str):
            raise InvalidMessage("Binary frames are not accepted; send JSON text")
        return self.data


class Connection:
    """The server's side of one WebSocket."""

    __slots__ = (
        "_acknowledges",
        "_bucket",
        "_close_task",
        "_close_timeout",
        "_explain",
        "_pace",
        "_reader",
        "_registry",
        "_render",
        "_revoke_deadline",
        "_revoked",
        "_ticker",
        "_waking",
        "closing",
        "joining",
        "key_id",
        "last_ping",
        "last_seq",
        "limit",
        "pending",
        "pending_bytes",
        "ping_sent_at",
        "transport",
        "writer",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        writer: AbstractStreamWriter,
        registry: Registry,
        *,
        limit: int,
        messages_per_second: float,
        close_timeout: float,
        socket_send_buffer: int = 0,
        pace: bool = False,
        render: Renderer | None = None,
        explain: bool = False,
        acknowledges: bool = False,
    ) -> None:
        transport = request.transport
        assert transport is not None
        self.ws = ws
        self.writer = writer
        self.transport = transport
        self.limit = limit
        self.last_seq = 0
        self.joining = False
        self.pending: list[tuple[int, bytes, bool]] = []
        self.pending_bytes = 0
        self.closing = False
        self.ping_sent_at = 0.0
        self.last_ping = time.monotonic()
        self._bucket = TokenBucket(messages_per_second)
        self._pace = pace
        self._close_timeout = close_timeout
        self._close_task: asyncio.Task[None] | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._registry = registry
        self._render = render
        self._explain = explain
        self._acknowledges = acknowledges
        #: Revoked, still answering the messages read before (``acknowledges``).
        self._revoked = False
        self._revoke_deadline: asyncio.TimerHandle | None = None
        #: The task waiting in ``next_message`` for the client's next message, if any.
        self._reader: asyncio.Task[object] | None = None
        self._waking = False
        #: The API key (or dashboard session) the credential came from, once known.
        self.key_id: int | None = None
        if socket_send_buffer:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, socket_send_buffer)
        registry.add(self)

    @property
    def member(self) -> str:
        """This connection's name in cluster-wide slots and claims (unique on this node
        while it is open)."""
        return f"{id(self):x}"

    def authenticated(self, key_id: int) -> None:
        """Record the key the connection's credential came from (once, when the
        endpoint's join authenticates): revoking it closes the connection."""
        if self.key_id is None:
            self.key_id = key_id
            self._registry.bind(self, key_id)

    def revoke(self) -> None:
        """Its key was revoked: close with 1008 ``authentication_failed``, after that
        error in the endpoint's format when it has error messages (as a refusal
        does, so clients stop rather than reconnect).

        An endpoint that ``acknowledges`` messages is first made to stop reading
        (``next_message`` returns None): its answers to the messages already
        read go out, and the error and close follow when it closes the
        connection, or after twice the close timeout if it never does.
        """
        if self.closing or self._revoked:
            return
        if not self._acknowledges:
            self._end_revoked()
            return
        self._revoked = True
        reader = self._reader
        if reader is not None:  # waiting for a message that must not be taken now
            self._waking = True
            reader.cancel()
        self._revoke_deadline = asyncio.get_running_loop().call_later(
            2 * self._close_timeout, self._end_revoked
        )

    def _end_revoked(self) -> None:
        if self.closing:
            return
        if self._render is not None:
            self.send(self._render(_REVOKED))
        self.close_soon(*close_for(_REVOKED, explain=self._explain))

    # -- outgoing --------------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """Queue a complete frame; close with 1013 if the client is too far behind."""
        if self.closing or self.transport.is_closing():
            return
        self.transport.write(frame)
        if self.transport.get_write_buffer_size() > self.limit:
            log.info("closing slow consumer (%d bytes queued)", self.limit)
            self.close_soon(*_SLOW_CLOSE)

    def send(self, payload: bytes) -> None:
        """Send one JSON text message."""
        self.write(text_frame(payload))

    async def write_paced(self, frame: bytes) -> None:
        """Write a frame, first waiting while half the output limit is queued.

        For replaying history: a client that reads is never mistaken for a slow
        consumer however long the history; one that stops reading is dropped
        by the keep-alive, so the wait is bounded.
        """
        if self.closing:
            return
        if self.transport.get_write_buffer_size() > self.limit // 2:
            await self.writer.drain()
        self.write(frame)

    def every(self, interval: float, frame: bytes) -> None:
        """Send ``frame`` ``interval`` seconds from now and every ``interval`` after
        (an application-level ping); stops when the connection closes."""
        loop = asyncio.get_running_loop()

        def tick() -> None:
            if self.closing:
                return
            self.write(frame)
            self._ticker = loop.call_later(interval, tick)

        self._ticker = loop.call_later(interval, tick)

    def offer(self, seq: int, frame: bytes, closes: bool) -> None:
        """Deliver a stream event (hub fan-out). Never awaits."""
        if self.joining:
            self.pending.append((seq, frame, closes))
            self.pending_bytes += len(frame)
            if self.pending_bytes > self.limit:
                self.close_soon(*_SLOW_CLOSE)
            return
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        self.write(frame)
        if closes:
            self.close_soon(CloseCode.NORMAL)

    def hold(self) -> None:
        """Start joining a stream: hold its live events until :meth:`go_live`."""
        self.joining = True

    def go_live(self, covered: int) -> None:
        """Send the events held while joining that come after ``covered``.

        ``covered`` is the last seq the join accounts for: sent as history,
        skipped as replaced, or before the position the client resumed from.
        Every join states it, so a held event at or below it (one the broker
        delivered late) can never go out a second time.
        """
        self.last_seq = max(self.last_seq, covered)
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        self.joining = False
        for seq, frame, closes in pending:
            self.offer(seq, frame, closes)

    # -- incoming --------------------------------------------------------------

    async def next_message(self) -> Inbound | None:
        """The client's next data message, or None once the connection has closed.

        Enforces the message rate: past it, a paced connection is read more
        slowly (backpressure), any other is refused with ``RateLimited``. (A
        plain coroutine rather than an async generator: an idle connection
        then holds no generator frame.)
        """
        ws = self.ws
        while True:
            if self._revoked:
                return None
            self._reader = asyncio.current_task()
            try:
                msg = await ws.receive()
            except asyncio.CancelledError:
                # revoke() woke us (a cancelled receive loses no message); any
                # other cancellation goes on.
                task = self._reader
                if self._waking and task is not None:
                    self._waking = False
                    if task.uncancel() == 0:
                        return None
                raise
            finally:
                self._reader = None
            kind = msg.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                if self._pace:
                    delay = self._bucket.reserve()
                    if delay:
                        await asyncio.sleep(delay)  # pacing to the rate, not awaiting an event
                elif not self._bucket.take():
                    raise RateLimited("Too many messages")
                return Inbound(msg.data, kind is WSMsgType.TEXT)
            elif kind is WSMsgType.PONG:
                self.ping_sent_at = 0.0
            elif kind is WSMsgType.PING:
                if not self._bucket.take():
                    raise RateLimited("Too many messages")
                with contextlib.suppress(ConnectionError):
                    await ws.pong(msg.data)
            else:
                return None

    # -- closing ---------------------------------------------------------------

    def close_soon(self, code: int, reason: str = "") -> None:
        """Start closing (once) without waiting for it."""
        if self._close_task is None:
            self.closing = True
            self._close_task = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def close(self, code: int, reason: str = "") -> None:
        """Close (``reason`` goes in the close frame) and wait until the socket is released.

        A connection whose key was revoked while it answered what it had read
        closes as revoked whatever ``code`` says (see :meth:`revoke`).
        """
        if self._revoked:
            self._end_revoked()
        if self._close_task is None and self.ws.closed:
            # The peer closed first and aiohttp answered: only our bookkeeping is left.
            self.closing = True
            self._release_transport()
            return
        self.close_soon(code, reason)
        assert self._close_task is not None
        await asyncio.shield(self._close_task)

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self._close_timeout):
                await self.ws.close(code=code, message=reason.encode(), drain=False)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            self._release_transport()

    def _release_transport(self) -> None:
        self._stop_timers()
        transport = self.transport
        if not transport.is_closing():
            transport.close()
        if transport.get_write_buffer_size():
            # Let the peer read what is queued, its close frame last; a peer
            # that still does not read is cut off.
            asyncio.get_running_loop().call_later(self._close_timeout, transport.abort)
        self._registry.discard(self)

    def _stop_timers(self) -> None:
        for timer in (self._ticker, self._revoke_deadline):
            if timer is not None:
                timer.cancel()
        self._ticker = self._revoke_deadline = None

    def abort(self) -> None:
        """Drop the connection at once (an unresponsive peer)."""
        self.closing = True
        self._stop_timers()
        self.transport.abort()
        self._registry.discard(self)
