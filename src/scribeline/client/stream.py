"""A stream that survives disconnects: connect, read with keep-alive, reconnect.

What is specific to a wire format (its URL, how to resume, which messages
are events, which closes are final) is a :class:`Session`; this module is the
loop around it. Retried: refused connections, dropped connections, 1001 (a
server stopping), 1011, 1013 and a stall (nothing received for
``stall_timeout`` seconds although we pinged). Final: what the session says
ends the stream (1000), and refusals (1008 and other policy closes), which
raise :class:`StreamRefused`.

An unreachable server is said at once, not after the last attempt: the first
failed connection attempt of an outage logs a WARNING naming the address (never
its query, which may hold a token) and why, and every retry is handed to the
``on_retry`` hook, while the stream keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from scribeline.client.backoff import DEFAULT_BACKOFF, Backoff
from scribeline.client.errors import ReconnectFailed, StreamRefused, redact_url
from scribeline.client.events import ErrorEvent

__all__ = ["DEFAULT_KEEPALIVE", "End", "KeepAlive", "RetryNotice", "Session", "Stream"]

log = logging.getLogger(__name__)

E = TypeVar("E")

#: Close codes after which trying again cannot help.
_FINAL_CLOSES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """``ping_interval``: seconds of silence before the client pings (WebSocket
    pings, and the application ping where the format has one);
    ``stall_timeout``: seconds without any message before the connection is
    given up and re-opened."""

    ping_interval: float = 15.0
    stall_timeout: float = 40.0

    def __post_init__(self) -> None:
        # A stall timeout within the ping interval would drop every quiet connection
        # before it was ever pinged.
        if not 0 < self.ping_interval < self.stall_timeout:
            raise ValueError("need 0 < ping_interval < stall_timeout")


#: Ping after 15 s of silence; re-open after 40 s without a message.
DEFAULT_KEEPALIVE = KeepAlive()


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """What a stream tells its ``on_retry`` hook before it waits to try again.

    ``lost``: an open connection was lost (else an attempt to connect failed);
    ``address``: where it connects, without query or credentials; ``reason``:
    why it failed; ``failures``: failed attempts in a row, this one included (a
    lost connection the server had accepted counts as the first); ``delay``:
    seconds until the next try.
    """

    lost: bool
    address: str
    reason: str
    failures: int
    delay: float


#: Called with a :class:`RetryNotice` before each wait to reconnect.
RetryHook = Callable[[RetryNotice], None]


class End(Exception):
    """Raised by a session: the stream has ended normally."""


class Session(ABC, Generic[E]):
    """One stream's format: where to connect, what to send, what the messages mean."""

    #: Sent after ``ping_interval`` seconds of silence (None: no application ping).
    app_ping: bytes | None = None
    #: Whether the current connection has been accepted by the server (set by the
    #: session when its format says so).
    _established = False

    @abstractmethod
    def url(self) -> str:
        """Where to connect now (a resumable format puts its position here)."""

    def connecting(self) -> None:
        """Called before each connection attempt: forget what the previous
        connection established (the position to resume from stays)."""
        self._established = False

    async def opened(self, ws: ClientConnection) -> None:
        """Called on each new connection before reading (subscriptions go here)."""

    @abstractmethod
    def handle(self, message: dict[str, Any]) -> Iterable[E]:
        """The events a message carries (usually none or one)."""

    def established(self) -> bool:
        """Whether the current connection has been accepted by the server."""
        return self._established

    def refusal(self) -> ErrorEvent | None:
        """The error the server sent before refusing (None: it sent none)."""
        return None

    def closed(self, code: int | None, reason: str) -> None:
        """The server closed: raise ``End`` if the stream is over, ``StreamRefused``
        if it refused us; return to reconnect."""
        if code == 1000:
            raise End()
        if code == 1008:
            error = self.refusal()
            raise StreamRefused(
                error.code if error else reason or "refused",
                error.message if error else "The server refused the stream",
                code,
            )
        if code in _FINAL_CLOSES:
            raise StreamRefused(reason or "protocol_error", "The connection failed", code)
        self._established = False


class _Retry(Exception):
    """This connection is lost (or could not be opened); open another.
    ``established``: whether the server had accepted it (which resets the count of
    failed attempts); ``lost``: whether it had been open at all."""

    def __init__(self, message: str, *, established: bool = False, lost: bool = True) -> None:
        super().__init__(message)
        self.established = established
        self.lost = lost


class Stream(Generic[E]):
    """An async iterator of a session's events across reconnections; also an
    async context manager that closes the connection on exit.

    ``on_retry`` is called (on the stream's task; it must not block) before each
    wait to reconnect, e.g. to tell a user the connection is lost or the server
    cannot be reached. ``ssl_context`` verifies a ``wss://`` server (None: the
    system's CAs).
    """

    def __init__(
        self,
        session: Session[E],
        *,
        headers: dict[str, str] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        keepalive: KeepAlive = DEFAULT_KEEPALIVE,
        open_timeout: float = 10.0,
        max_size: int = 16 * 1024 * 1024,
        on_retry: RetryHook | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._session = session
        self._ssl = ssl_context
        self._on_retry = on_retry
        #: Whether the server has been unreachable since the last open connection
        #: (the warning is logged once per outage, not once per attempt).
        self._unreachable = False
        self._headers = headers or {}
        self._backoff = backoff
        self._keepalive = keepalive
        self._open_timeout = open_timeout
        self._max_size = max_size
        self._ws: ClientConnection | None = None
        self._events: AsyncGenerator[E, None] | None = None
        self._rng = random.Random()
        self._closing = asyncio.Event()
        self._iterating = False  # a task is inside __anext__
        #: How many times an accepted connection was lost (each is followed by
        #: reconnection attempts).
        self.reconnects = 0
        self._connected = asyncio.Event()

    # -- the iterator ----------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[E]:
        return self

    async def __anext__(self) -> E:
        if self._events is None:
            self._events = self._run()
        self._iterating = True
        try:
            return await self._events.__anext__()
        finally:
            self._iterating = False

    async def __aenter__(self) -> Stream[E]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection and stop the stream (also from another task than
        the one iterating: its ``async for`` then ends)."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._events is not None and not self._iterating:
            await self._events.aclose()

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (it may still be refused)."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until a connection is open (e.g. before :meth:`send`). Only while
        another task iterates the stream: iterating is what connects."""
        await self._connected.wait()

    async def send(self, message: dict[str, Any]) -> None:
        """Send a message on the current connection; ``ConnectionError`` while there
        is none (before the first event, or while reconnecting)."""
        ws = self._ws
        if ws is None:
            raise ConnectionError("the stream is not connected")
        try:
            await ws.send(orjson.dumps(message).decode())
        except ConnectionClosed as exc:
            raise ConnectionError(f"the stream's connection is lost ({exc})") from exc

    # -- the loop --------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[E, None]:
        failures = 0
        while not self._closing.is_set():
            self._session.connecting()
            try:
                ws = await self._connect()
            except _Retry as exc:
                failures += 1
                await self._wait(failures, exc)
                continue
            if self._closing.is_set():  # closed while connecting
                await ws.close()
                return
            if self._unreachable:
                self._unreachable = False
                log.info("connected to %s again", self._address())
            self._ws = ws
            self._connected.set()
            try:
                async for event in self._read(ws):
                    failures = 0
                    yield event
                return
            except End:
                return
            except _Retry as exc:
                lost = exc
            finally:
                self._ws = None
                self._connected.clear()
                await ws.close()
            if self._closing.is_set():
                return
            failures = 0 if lost.established else failures + 1
            self.reconnects += 1
            await self._wait(max(failures, 1), lost)

    def _address(self) -> str:
        return redact_url(self._session.url())

    async def _wait(self, failures: int, cause: _Retry) -> None:
        if self._closing.is_set():
            return  # closed by its owner: nothing to give up on
        address = self._address()
        if self._backoff.exhausted(failures):
            raise ReconnectFailed(
                f"gave up on {address} after {failures} failed attempts in a row: {cause}"
            ) from cause
        delay = self._backoff.delay(failures, self._rng)
        if not cause.lost and not self._unreachable:
            self._unreachable = True
            log.warning("cannot reach %s (%s); retrying", address, cause)
        else:
            log.info("reconnecting to %s in %.2f s (%s)", address, delay, cause)
        if self._on_retry is not None:
            self._on_retry(RetryNotice(cause.lost, address, str(cause), failures, delay))
        # The backoff itself; ``aclose`` cuts it short.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    async def _connect(self) -> ClientConnection:
        url = self._session.url()
        # websockets refuses an SSL context for a ws:// URL.
        tls: dict[str, Any] = {}
        if self._ssl is not None and url.startswith("wss://"):
            tls["ssl"] = self._ssl
        try:
            return await connect(
                url,
                **tls,
                additional_headers=self._headers,
                open_timeout=self._open_timeout,
                ping_interval=self._keepalive.ping_interval,
                ping_timeout=self._keepalive.stall_timeout,
                max_size=self._max_size,
                close_timeout=5,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500 and status not in (408, 429):
                raise StreamRefused("http_error", f"HTTP {status}", None) from exc
            raise _Retry(f"HTTP {status}", lost=False) from exc
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            raise _Retry(str(exc) or type(exc).__name__, lost=False) from exc

    def _lost(self, exc: ConnectionClosed) -> _Retry:
        """The server closed or the connection dropped: let the session decide
        (``End``, ``StreamRefused``), else the retry to raise."""
        established = self._session.established()
        code = exc.rcvd.code if exc.rcvd is not None else None
        if self._closing.is_set():
            raise End()  # we closed it ourselves
        self._session.closed(code, exc.rcvd.reason if exc.rcvd is not None else "")
        return _Retry(f"connection closed ({code or 'abnormally'})", established=established)

    async def _read(self, ws: ClientConnection) -> AsyncGenerator[E, None]:
        session = self._session
        with contextlib.suppress(ConnectionClosed):
            # Closed already: reading below delivers what came before the close, then
            # reports the close itself.
            await session.opened(ws)
        last = time.monotonic()
        interval, stall = self._keepalive.ping_interval, self._keepalive.stall_timeout
        while True:
            silence = time.monotonic() - last
            if silence >= stall:
                # Nothing to say goodbye to: drop it rather than wait for a close.
                ws.transport.abort()
                raise _Retry(
                    "no message within the stall timeout", established=session.established()
                )
            try:
                raw = await asyncio.wait_for(ws.recv(), min(interval, stall - silence))
            except TimeoutError:
                if session.app_ping is not None and time.monotonic() - last < stall:
                    await self._send_quietly(ws, session.app_ping)
                continue
            except ConnectionClosed as exc:
                raise self._lost(exc) from None
            last = time.monotonic()
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.warning("ignoring a message that is not JSON")
                continue
            if isinstance(message, dict):
                for event in session.handle(message):
                    yield event

    @staticmethod
    async def _send_quietly(ws: ClientConnection, payload: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):  # the next receive reports the close
            await ws.send(payload.decode())
