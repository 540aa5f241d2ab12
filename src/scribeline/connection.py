"""One server-side WebSocket: the socket's protocol after the upgrade.

After the handshake the connection owns its socket (``api/websocket.py``
takes it over from the HTTP layer): it is the transport's asyncio protocol,
reads the client's frames with :class:`FrameReader` and writes pre-built
frames straight to the transport (DESIGN.md, "Stack"). The transport's write
buffer is the connection's one bounded queue: once it holds more than
``limit`` bytes the client is not keeping up and is closed with 1013 (it
resumes with ``since``); nobody else ever waits for it.

Messages from the client go to a small inbox, taken either by a task that
awaits :meth:`next_message` (producers) or, for subscribers, by the
endpoint when :meth:`on_message`'s callback says one is waiting; an idle
subscriber therefore holds no task. Past ``_INBOX_HIGH`` waiting messages
(or ``_INBOX_BYTES``)
the socket is not read until the inbox drains. The message rate is enforced
in the order messages arrive (pings count too): past it a paced connection
is read more slowly, any other is refused with ``RateLimited`` once the
messages before have been taken. Pings are answered, pongs clear the
keep-alive probe, and a close frame is answered and ends the connection. A
client that breaks the protocol is closed with the code its error calls for
(1002, 1007, 1009).

While a subscriber joins a stream, live events are held in ``pending`` (also
bounded) until history has been sent; ``go_live`` then sends the held events
that history did not cover. ``last_seq`` makes every seq go out at most once.

A connection opened with a credential knows the API key it came from
(``key_id``); the registry indexes connections by it, so revoking the key
closes them all (``Registry.close_key``). A connection whose endpoint
answers every message it reads (``acknowledges``: the producers) first stops
handing out messages and lets the answers to what it read go out, so that
every message stored has been acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scribeline.errors import (
    AuthenticationFailed,
    CloseCode,
    InvalidMessage,
    RateLimited,
    ScribelineError,
    SlowConsumer,
    close_for,
)
from scribeline.log_context import CONNECTION_ID, connection_context
from scribeline.protocols.frames import close_frame, pong_frame, text_frame
from scribeline.protocols.ws_reader import CLOSE, PING, PONG, TEXT, FrameError, FrameReader

if TYPE_CHECKING:
    from scribeline.registry import Registry

__all__ = ["Connection", "Inbound", "Renderer", "TokenBucket"]

log = logging.getLogger(__name__)

#: How a client too far behind is closed (1013, ``slow_consumer``): it resumes by seq.
_SLOW_CLOSE = close_for(SlowConsumer("The client is not reading fast enough"))
#: What a connection is told when the key that authenticated it is revoked.
_REVOKED = AuthenticationFailed("The credential was revoked")
#: Waiting messages past which the socket is not read; reading resumes at _INBOX_LOW.
_INBOX_HIGH = 64
_INBOX_LOW = 16
#: The same bound in bytes (characters of text), whatever the messages' count.
_INBOX_BYTES = 256 * 1024

#: Bytes held by a cork (see ``Connection.attach``) past which they are written anyway.
_CORK_MAX = 64 * 1024

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


class Connection(asyncio.Protocol):
    """The server's side of one WebSocket."""

    __slots__ = (
        "_acknowledges",
        "_bucket",
        "_close_sent",
        "_close_task",
        "_close_timeout",
        "_closed",
        "_corked",
        "_corked_bytes",
        "_deadline",
        "_explain",
        "_inbox",
        "_inbox_bytes",
        "_lost",
        "_on_end",
        "_on_message",
        "_pace",
        "_peer_close",
        "_reader",
        "_reading_paused",
        "_refusal",
        "_registry",
        "_released",
        "_render",
        "_revoked",
        "_ticker",
        "_waiters",
        "_writable",
        "closing",
        "context",
        "joining",
        "key_id",
        "kind",
        "last_ping",
        "last_seq",
        "limit",
        "pending",
        "pending_bytes",
        "ping_sent_at",
        "transport",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        registry: Registry,
        *,
        limit: int,
        messages_per_second: float,
        max_message: int,
        close_timeout: float,
        socket_send_buffer: int = 0,
        pace: bool = False,
        render: Renderer | None = None,
        explain: bool = False,
        acknowledges: bool = False,
        kind: str = "",
    ) -> None:
        self.transport = transport
        #: The WebSocket protocol it speaks (``live_transcript``...: a metrics label).
        self.kind = kind
        self.limit = limit
        self.last_seq = 0
        self.joining = False
        self.pending: list[tuple[int, bytes, bool]] = []
        self.pending_bytes = 0
        #: Closing or closed: nothing more is written or handed out.
        self.closing = False
        self.ping_sent_at = 0.0
        self.last_ping = time.monotonic()
        self._reader = FrameReader(max_message)
        #: Frames held back to go out in one write (see :meth:`attach`), or None.
        self._corked: list[bytes] | None = None
        self._corked_bytes = 0
        self._inbox: deque[Inbound] | None = None  # made by the first message
        self._inbox_bytes = 0
        self._reading_paused = False
        self._bucket = TokenBucket(messages_per_second)
        self._pace = pace
        self._close_timeout = close_timeout
        self._close_task: asyncio.Task[None] | None = None
        self._close_sent = False
        self._released = False
        #: The peer's close frame has arrived or the socket is gone (the handshake is over).
        self._closed = False
        self._lost = False
        self._ticker: asyncio.TimerHandle | None = None
        self._registry = registry
        self._render = render
        self._explain = explain
        self._acknowledges = acknowledges
        #: Revoked, still answering the messages read before (``acknowledges``).
        self._revoked = False
        #: When a revoked or closed-by-the-client acknowledging connection is closed
        #: anyway, if its endpoint does not close it first.
        self._deadline: asyncio.TimerHandle | None = None
        #: The client's close code, while the messages it sent before are still taken.
        self._peer_close: int | None = None
        #: An error the client caused outside a message (pings past the rate), raised
        #: once the messages it sent before have been taken.
        self._refusal: ScribelineError | None = None
        #: Resolved when a message arrives or the connection ends (``next_message``),
        #: when the write buffer drains (``write_paced``) or when the close completes.
        self._waiters: list[asyncio.Future[None]] | None = None
        self._writable = True
        self._on_message: Callable[[], None] | None = None
        self._on_end: Callable[[], None] | None = None
        #: The API key (or dashboard session) the credential came from, once known.
        self.key_id: int | None = None
        if socket_send_buffer:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, socket_send_buffer)
        #: Its tasks run in this context: their log lines carry its ``connection_id``.
        self.context = connection_context()
        registry.add(self)

    @property
    def log_extra(self) -> dict[str, str | None]:
        """For a line logged outside its tasks (a protocol callback, a fan-out)."""
        return {"connection_id": self.context.get(CONNECTION_ID)}

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` for this connection, in its context, in a task that shutdown
        waits for."""
        return self.context.run(self._registry.spawn, work)

    def attach(self, answer: bytes = b"", tail: bytes = b"") -> None:
        """Become the transport's protocol after the handshake: ``answer`` (the 101)
        and everything the join writes after it go out together, in one write,
        at :meth:`uncork` (or once ``_CORK_MAX`` bytes are held). ``tail``: what
        the client sent after its upgrade request."""
        transport = self.transport
        transport.set_protocol(self)
        # Writing pauses (write_paced waits) once half the output limit is queued.
        transport.set_write_buffer_limits(high=self.limit // 2)
        self._corked = [answer] if answer else []
        self._corked_bytes = len(answer)
        if tail:
            self.data_received(tail)

    def uncork(self) -> None:
        """Write what :meth:`attach` held back and stop holding."""
        corked, self._corked = self._corked, None
        if corked:
            self._corked_bytes = 0
            self._flush(b"".join(corked))

    def _flush(self, data: bytes) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.limit and not self.closing:
            log.info("closing slow consumer (%d bytes queued)", self.limit, extra=self.log_extra)
            self._close_slow()

    def _raw(self, data: bytes) -> None:
        """Write ``data`` now, or after what is corked."""
        corked = self._corked
        if corked is None:
            self.transport.write(data)
        else:
            corked.append(data)
            self._corked_bytes += len(data)

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
        self._wake()
        self._deadline = asyncio.get_running_loop().call_later(
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
        if self.closing:
            return
        corked = self._corked
        if corked is None:
            self._flush(frame)
            return
        corked.append(frame)
        self._corked_bytes += len(frame)
        if self._corked_bytes > _CORK_MAX:
            self._corked, self._corked_bytes = [], 0
            self._flush(b"".join(corked))

    def send(self, payload: bytes) -> None:
        """Send one JSON text message."""
        self.write(text_frame(payload))

    async def write_paced(self, frame: bytes) -> None:
        """Write a frame, first waiting while half the output limit is queued.

        For replaying history: a client that reads is never mistaken for a slow
        consumer however long the history; one that stops reading is dropped
        by the keep-alive, so the wait is bounded.
        """
        while not self._writable and not self.closing:
            await self._wait()
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
                self._close_slow()
            return
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        if self._corked is None and not self.closing:  # _flush(), inlined: once per delivery
            transport = self.transport
            transport.write(frame)
            if transport.get_write_buffer_size() > self.limit:
                log.info(
                    "closing slow consumer (%d bytes queued)", self.limit, extra=self.log_extra
                )
                self._close_slow()
        else:
            self.write(frame)
        if closes:
            self.close_soon(CloseCode.NORMAL)

    def _close_slow(self) -> None:
        """Close with 1013: the client is too far behind (it resumes by seq)."""
        if not self.closing:
            self._registry.stats.slow(self.kind)
        self.close_soon(*_SLOW_CLOSE)

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

    def on_message(self, callback: Callable[[], None], on_end: Callable[[], None]) -> None:
        """Call ``callback`` whenever a message is waiting to be taken
        (:meth:`take_message`) and ``on_end`` once, when the connection ends
        (at once if it already has): how an endpoint serves it without a task."""
        self._on_message = callback
        self._on_end = on_end
        if self._closed or self.closing:
            self._ended()
        elif self._inbox or self._refusal is not None:
            callback()

    def take_message(self) -> Inbound | None:
        """The client's next data message if one is waiting (None: none, or the
        connection is ending); raises ``RateLimited`` where the client went past
        the message rate."""
        return self._pop()

    def _pop(self) -> Inbound | None:
        """The oldest waiting message; once none is left, the client's close (if it
        sent one after them) is answered."""
        if self._revoked or self.closing:
            return None
        inbox = self._inbox
        if not inbox:
            refusal, self._refusal = self._refusal, None
            if refusal is not None:
                raise refusal
            if self._peer_close is not None and not self._acknowledges:
                self._peer_closed(self._peer_close)
            return None
        message = inbox.popleft()
        self._inbox_bytes -= len(message.data)
        if (
            self._reading_paused
            and len(inbox) <= _INBOX_LOW
            and self._inbox_bytes <= _INBOX_BYTES // 4
            and self._peer_close is None
            and self._refusal is None
        ):
            self._reading_paused = False
            self.transport.resume_reading()
        return message

    async def next_message(self) -> Inbound | None:
        """The client's next data message, or None once the connection has ended
        (or its key was revoked, see :meth:`revoke`).

        Enforces the message rate: past it, a paced connection is read more
        slowly (backpressure), any other is refused with ``RateLimited``.
        """
        while True:
            if self._revoked or self.closing or self._closed:
                return None
            message = self._pop()
            if message is not None:
                if self._pace:
                    delay = self._bucket.reserve()
                    if delay:
                        await asyncio.sleep(delay)  # pacing to the rate, not awaiting an event
                        if not self._handing_out():  # ended meanwhile: not handed out
                            assert self._inbox is not None
                            self._inbox.appendleft(message)
                            self._inbox_bytes += len(message.data)
                            return None
                return message
            if self._peer_close is not None or self.closing or self._closed:
                return None  # the client closed after everything it sent was taken
            self.uncork()  # whoever waits for the client has said all it had to say
            await self._wait()

    def _handing_out(self) -> bool:
        """Whether messages may still be handed out (not revoked, not closing)."""
        return not (self._revoked or self.closing)

    async def _wait(self) -> None:
        """Until :meth:`_wake` (each waiter has its own future, so cancelling one
        waiter leaves the others waiting)."""
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # -- the transport's protocol ----------------------------------------------

    def _refuse(self, error: ScribelineError) -> None:
        """The client went past a limit: ``error`` is raised to whoever takes its
        messages once those it sent before are taken (their answers go first),
        in the message rate's order; nothing more is read."""
        self._refusal = error
        self._stop_reading()
        self._wake()
        if self._on_message is not None:
            self._on_message()

    def _stop_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        if self._closed or self._peer_close is not None:
            return  # nothing after a close frame counts
        if self._refusal is not None and not self.closing:
            return  # nor after a refusal, but the client's answer to our close
        try:
            messages = self._reader.feed(data)
        except FrameError as exc:
            log.info(
                "closing a WebSocket that broke the protocol (%d: %s)",
                exc.code,
                exc.reason,
                extra=self.log_extra,
            )
            self._fail(exc.code, exc.reason)
            return
        for opcode, payload in messages:
            if opcode == TEXT or opcode == 0x2:
                if self.closing:
                    continue  # our close is on its way: the client's data is moot
                if not self._pace and not self._bucket.take():
                    self._refuse(RateLimited("Too many messages"))
                    return
                inbox = self._inbox
                if inbox is None:
                    inbox = self._inbox = deque()
                assert not isinstance(payload, tuple)
                inbox.append(Inbound(payload, opcode == TEXT))
                self._inbox_bytes += len(payload)
                if (len(inbox) >= _INBOX_HIGH or self._inbox_bytes >= _INBOX_BYTES) and not (
                    self._reading_paused or self.closing
                ):
                    self._reading_paused = True
                    self.transport.pause_reading()
                self._wake()
                if self._on_message is not None:
                    self._on_message()
            elif opcode == PONG:
                self.ping_sent_at = 0.0
            elif opcode == PING:
                if not self.closing:
                    if self._bucket.take():
                        assert isinstance(payload, bytes)
                        self._raw(pong_frame(payload))
                    else:
                        self._refuse(RateLimited("Too many messages"))
                        return
            elif opcode == CLOSE:
                assert isinstance(payload, tuple)
                if (self._inbox or self._acknowledges) and not self.closing:
                    # Its messages before the close are still taken first; a producer
                    # also answers those it took, then closes (or is closed anyway).
                    self._peer_close = code = payload[0]
                    self._stop_reading()
                    self._wake()
                    if self._acknowledges:
                        self._deadline = asyncio.get_running_loop().call_later(
                            2 * self._close_timeout, self._peer_closed, code
                        )
                else:
                    self._peer_closed(payload[0])
                return

    def _peer_closed(self, code: int) -> None:
        """The client's close frame: answer it (unless ours went first) and end."""
        self._fail(code if code != 1005 else CloseCode.NORMAL)

    def _fail(self, code: int, reason: str = "") -> None:
        """Close at once with ``code`` (no waiting for the client's close frame: it
        came, or the client broke the protocol or a limit)."""
        self.closing = True
        self._send_close(code, reason)
        self._closed = True
        self.transport.close()
        self._ended()

    def _send_close(self, code: int, reason: str) -> None:
        """Our close frame, once, after whatever is corked."""
        if self._close_sent:
            return
        self._close_sent = True
        self.uncork()
        if not self.transport.is_closing():
            self.transport.write(close_frame(code, reason))

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._closed = True
        self.closing = True
        self._ended()

    def _ended(self) -> None:
        """The connection is over (or its close handshake is): wake whoever waits
        and tell the endpoint, once."""
        self._stop_timers()
        self._wake()
        on_end, self._on_end, self._on_message = self._on_end, None, None
        if self._lost:
            self._registry.discard(self)
        if on_end is not None:
            on_end()

    # -- closing ---------------------------------------------------------------

    def close_soon(self, code: int, reason: str = "") -> None:
        """Start closing (once) without waiting for it: our close frame goes now."""
        if self._close_task is None:
            self.closing = True
            self._send_close(code, reason)
            if self._reading_paused and self._peer_close is None:
                # A full inbox or a refusal stopped reading: the client's close frame
                # must be read now (its data no longer counts).
                self._reading_paused = False
                self.transport.resume_reading()
            loop = asyncio.get_running_loop()
            self._close_task = self.context.run(loop.create_task, self._close())

    async def close(self, code: int, reason: str = "") -> None:
        """Close (``reason`` goes in the close frame) and wait until the socket is released.

        A connection whose key was revoked while it answered what it had read
        closes as revoked whatever ``code`` says (see :meth:`revoke`).
        """
        if self._revoked:
            self._end_revoked()
        if self._closed and self._close_task is None:
            self._release_transport()  # the handshake is over: nothing to wait for
            return
        self.close_soon(code, reason)
        assert self._close_task is not None
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        """Wait (bounded) for the client's close frame, unless it came already
        (perhaps behind messages no longer taken), then release the socket."""
        try:
            if not self._closed and self._peer_close is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._close_timeout):
                        while not self._closed:
                            await self._wait()
        finally:
            self._release_transport()

    def _release_transport(self) -> None:
        if self._released:
            return
        self._released = True
        self._stop_timers()
        transport = self.transport
        if not transport.is_closing():
            transport.close()
        if not self._lost and transport.get_write_buffer_size():
            # Let the peer read what is queued, its close frame last; a peer
            # that still does not read is cut off.
            asyncio.get_running_loop().call_later(self._close_timeout, transport.abort)
        self._registry.discard(self)
        if not self._closed:
            self._closed = True
            self._ended()

    def _stop_timers(self) -> None:
        for timer in (self._ticker, self._deadline):
            if timer is not None:
                timer.cancel()
        self._ticker = self._deadline = None

    def abort(self) -> None:
        """Drop the connection at once (an unresponsive peer)."""
        self.closing = True
        self._stop_timers()
        self.transport.abort()
        self._registry.discard(self)
