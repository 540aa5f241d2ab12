"""Every WebSocket endpoint's skeleton: open, join, serve, leave, close.

An endpoint states only what is its own (an :class:`Endpoint`: how it joins,
how it serves messages, what it undoes when the client leaves, how its wire
format renders an error); :func:`serve_websocket` runs it the same way for
every endpoint, refusing and reporting errors in one place. A join
authenticates through :func:`authenticate` (or :func:`authorize_call`), which
ties the connection to the credential's key: revoking the key closes it.

The handshake is answered here and the socket taken over from the HTTP
layer (``api/http.py``): the :class:`Connection` becomes its protocol and the
HTTP request, its handler and parser are freed. The endpoint then runs in a
task of the registry's; a subscriber endpoint (``answer``) is served without
one once it has joined: each message it sends starts a short task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from aiohttp import web

from scribeline.api.http import SERVER_NAME, Detached, detach
from scribeline.api.state import SERVICES, Services
from scribeline.auth import Credentials, Principal, websocket_credentials
from scribeline.connection import Connection, Inbound, Renderer
from scribeline.domain import Call
from scribeline.errors import (
    CloseCode,
    ConnectionLimit,
    HttpError,
    InternalError,
    InvalidCallSid,
    ScribelineError,
    close_for,
    error_for,
)
from scribeline.ingest.models import valid_call_sid
from scribeline.metrics import protocol_of
from scribeline.protocols import handshake

__all__ = [
    "Endpoint",
    "Renderer",
    "authenticate",
    "authorize_call",
    "detach_stream",
    "join_stream",
    "open_websocket",
    "report",
    "serve_websocket",
]

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[S]):
    """What one WebSocket endpoint does with an accepted connection.

    ``join`` authorizes and joins (its error refuses the connection; None:
    nothing to serve, close normally). Then either ``serve`` answers messages
    until the client leaves (a task for the connection's life: producers) or
    ``answer`` answers each message as it comes (no task while the client is
    quiet: subscribers); an error from either ends the connection. ``leave``
    undoes the join, whatever ended the connection. ``render`` writes an error
    in the endpoint's format (None: the format has no error message, so every
    error closes with its code and name only). ``ending``: errors that close
    even though their kind usually leaves a connection open. ``explain``:
    close reasons carry the error's message too (for formats without error
    messages). ``acknowledges``: ``serve`` answers every message it reads (an
    ack or an error), so a revocation lets those answers go out before it
    closes (``Connection.revoke``). The callables must not hold the HTTP
    request: the connection outlives it.
    """

    join: Callable[[Connection, Credentials], Awaitable[S | None]]
    serve: Callable[[Connection, S], Awaitable[None]] | None
    render: Renderer | None
    leave: Callable[[Connection, S], Awaitable[None]] | None = None
    ending: tuple[type[ScribelineError], ...] = ()
    explain: bool = False
    acknowledges: bool = False
    answer: Callable[[Connection, S, Inbound], Awaitable[None]] | None = None

    async def run(
        self,
        conn: Connection,
        credentials: Credentials,
        done: Callable[[], None] | None = None,
        joined: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Join, then serve (or hand the connection to :class:`_Answering`);
        ``done`` is called once the connection has ended and left its stream,
        ``joined`` when the join has ended, with its error if it refused."""
        answering = False
        try:
            try:
                state = await self.join(conn, credentials)
            except Exception as exc:
                if joined is not None:
                    joined(exc)
                await report(conn, exc, self.render, refusal=True, explain=self.explain)
                await conn.close(CloseCode.NORMAL)
                return
            finally:
                conn.uncork()  # the answer to the handshake and what the join sent, at once
            if joined is not None:
                joined(None)
            if state is None:
                await conn.close(CloseCode.NORMAL)
                return
            if self.serve is None:
                if conn.closing:  # it ended while joining: leave now, in this task
                    await self.end(conn, state)
                    return
                answering = True
                _Answering(self, conn, state, done).start()
                return
            try:
                await self.serve(conn, state)
            except Exception as exc:
                await self.failed(conn, exc)
            finally:
                await self.end(conn, state)
        finally:
            if done is not None and not answering:
                done()

    async def failed(self, conn: Connection, exc: Exception) -> None:
        """Report an error that ends serving the connection."""
        await report(
            conn, exc, self.render, refusal=isinstance(exc, self.ending), explain=self.explain
        )

    async def end(self, conn: Connection, state: S) -> None:
        """Leave the stream and close."""
        try:
            if self.leave is not None:
                await self.leave(conn, state)
        finally:
            await conn.close(CloseCode.NORMAL)


class _Answering(Generic[S]):
    """Serves a joined subscriber with ``Endpoint.answer``: a task only while its
    messages are being answered, and one to leave when the connection ends."""

    __slots__ = ("_conn", "_done", "_endpoint", "_state", "_task")

    def __init__(
        self, endpoint: Endpoint[S], conn: Connection, state: S, done: Callable[[], None] | None
    ) -> None:
        self._endpoint = endpoint
        self._conn = conn
        self._state = state
        self._done = done
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._conn.on_message(self._waiting, self._ended)

    def _waiting(self) -> None:
        if self._task is None:
            self._task = self._conn.spawn(self._answer_all())

    async def _answer_all(self) -> None:
        conn, endpoint = self._conn, self._endpoint
        answer = endpoint.answer
        assert answer is not None
        try:
            while (message := conn.take_message()) is not None:
                await answer(conn, self._state, message)
        except Exception as exc:
            await endpoint.failed(conn, exc)
            conn.close_soon(CloseCode.NORMAL)
        finally:
            self._task = None

    def _ended(self) -> None:
        self._conn.spawn(self._leave())

    async def _leave(self) -> None:
        task = self._task
        try:
            if task is not None:
                with contextlib.suppress(Exception):
                    await task  # its answer goes nowhere now, but let it finish first
            await self._endpoint.end(self._conn, self._state)
        finally:
            if self._done is not None:
                self._done()


async def serve_websocket(
    request: web.Request,
    endpoint: Endpoint[S],
    messages_per_second: float | None = None,
    *,
    pace: bool = False,
    max_frame_bytes: int | None = None,
    hold: AbstractContextManager[None] | None = None,
) -> web.StreamResponse:
    """Answer the handshake, take the socket over and run ``endpoint`` on it in a
    task (see :func:`open_websocket` for the options). ``hold`` is entered before
    the upgrade (its error refuses it) and left when the connection has ended."""
    services = request.app[SERVICES]
    resource = request.match_info.route.resource
    kind = protocol_of(resource.canonical if resource is not None else "")
    stats = services.registry.stats
    credentials = websocket_credentials(request)
    done: Callable[[], None] | None = None
    try:
        if hold is not None:
            hold.__enter__()

            def done() -> None:
                hold.__exit__(None, None, None)

        conn = open_websocket(
            request,
            services,
            credentials,
            messages_per_second,
            pace=pace,
            max_frame_bytes=max_frame_bytes,
            render=endpoint.render,
            explain=endpoint.explain,
            acknowledges=endpoint.acknowledges,
            kind=kind,
        )
    except BaseException as exc:
        if isinstance(exc, Exception):
            stats.refused(kind, exc)
        if done is not None:
            done()
        raise
    conn.spawn(endpoint.run(conn, credentials, done, partial(stats.joined, kind)))
    return Detached()


def open_websocket(
    request: web.Request,
    services: Services,
    credentials: Credentials,
    messages_per_second: float | None = None,
    *,
    pace: bool = False,
    max_frame_bytes: int | None = None,
    render: Renderer | None = None,
    explain: bool = False,
    acknowledges: bool = False,
    kind: str = "",
) -> Connection:
    """Answer the upgrade (echoing a token subprotocol) and make a Connection the
    socket's protocol; a request that is not a valid upgrade raises ``InvalidUpgrade``.

    ``messages_per_second`` and ``max_frame_bytes`` default to the
    subscribers' limits; with ``pace`` a client over the rate is slowed down
    instead of refused. ``render``, ``explain`` and ``acknowledges`` are the
    endpoint's (how the connection says its key was revoked); ``kind`` is
    its protocol (``metrics.PROTOCOLS``).
    """
    s = services.settings
    if services.registry.stopping:
        raise HttpError(503, "The server is shutting down", "unavailable")
    answer = handshake.accept(request.headers, credentials.subprotocol, SERVER_NAME)
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away before the upgrade")
    conn = Connection(
        transport,
        services.registry,
        limit=s.send_buffer_bytes,
        messages_per_second=messages_per_second or s.client_messages_per_second,
        max_message=max_frame_bytes or s.max_frame_bytes,
        close_timeout=s.close_timeout,
        socket_send_buffer=s.socket_send_buffer_bytes,
        pace=pace,
        render=render,
        explain=explain,
        acknowledges=acknowledges,
        kind=kind,
    )
    conn.attach(answer, detach(request))
    return conn


async def authenticate(services: Services, conn: Connection, token: str | None) -> Principal:
    """``token``'s principal, for a join: ``conn`` is closed when the key the token
    is or was minted from is revoked."""
    principal = await services.auth.authenticate(token)
    conn.authenticated(principal.key_id)
    return principal


async def authorize_call(
    services: Services, conn: Connection, call_sid: str, token: str | None, scope: str
) -> tuple[Principal, Call]:
    """The checks every per-call stream starts with, in the documented order.

    SID syntax, then the token and its scope, then the call, looked up within
    the token's organization only (another organization's call is not found).
    """
    if not valid_call_sid(call_sid):
        raise InvalidCallSid()
    principal = await authenticate(services, conn, token)
    principal.require(scope)
    principal.allow_call(call_sid)
    return principal, await services.calls.get(principal.org_id, call_sid)


async def join_stream(
    services: Services,
    conn: Connection,
    stream: str,
    what: str,
    join: Callable[[], Awaitable[bool]],
    limit: int | None = None,
) -> bool:
    """Take one of the stream's connection slots, then ``join`` it (``Hub.join``).

    ``what`` names the resource in the refusal ("call", "campaign");
    ``limit`` defaults to the per-call connection limit. The slot is given
    back when the join fails or declines (returns False).
    """
    registry = services.registry
    if not await registry.acquire(
        stream, limit or services.settings.max_connections_per_call, conn
    ):
        raise ConnectionLimit(f"Connection limit reached for this {what}")
    try:
        joined = await join()
    except BaseException:
        await registry.release(stream, conn)
        raise
    if not joined:
        await registry.release(stream, conn)
    return joined


async def detach_stream(services: Services, conn: Connection, stream: str) -> None:
    """Undo :func:`join_stream`."""
    await services.hub.detach(stream, conn)
    await services.registry.release(stream, conn)


async def report(
    conn: Connection,
    exc: BaseException,
    render: Renderer | None,
    *,
    refusal: bool = False,
    explain: bool = False,
) -> None:
    """Tell the client about ``exc``; close unless the error leaves the connection usable.

    A ``refusal`` (an error while opening the stream) always closes, with the
    error's close code and its code (``not_found``...) as the close reason, for
    clients that only see the close. Without ``render`` no message is sent and
    every error closes. Internal errors are logged here and reach the client
    only as a generic message. A ``ConnectionError`` is silent only when the
    client's socket is gone; any other (a broker outage) is reported, so the
    client knows to come back rather than taking the close for the stream's end.
    """
    if conn.closing or (isinstance(exc, ConnectionError) and conn.transport.is_closing()):
        return  # nobody left to tell (a peer that went away is routine, not an error)
    error = error_for(exc)
    if isinstance(error, InternalError):
        log.exception("internal error on a WebSocket", exc_info=exc)
    if render is not None:
        with contextlib.suppress(ConnectionError):
            conn.send(render(error))
    if refusal or render is None or not error.keeps_connection:
        await conn.close(*close_for(error, explain=explain))
