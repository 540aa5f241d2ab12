"""Every WebSocket endpoint's skeleton: open, join, serve, leave, close.

An endpoint states only what is its own (an :class:`Endpoint`: how it joins,
how it serves messages, what it undoes when the client leaves, how its wire
format renders an error); :func:`serve_websocket` runs it the same way for
every endpoint, refusing and reporting errors in one place. A join
authenticates through :func:`authenticate` (or :func:`authorize_call`), which
ties the connection to the credential's key: revoking the key closes it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web

from scribeline.api.state import SERVICES, Services
from scribeline.auth import Credentials, Principal, websocket_credentials
from scribeline.connection import Connection, Renderer
from scribeline.domain import Call
from scribeline.errors import (
    CloseCode,
    ConnectionLimit,
    InternalError,
    InvalidCallSid,
    ScribelineError,
    close_for,
    error_for,
)
from scribeline.ingest.models import valid_call_sid

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
    nothing to serve, close normally); ``serve`` answers messages until the
    client leaves; ``leave`` undoes the join, whatever ended ``serve``.
    ``render`` writes an error in the endpoint's format (None: the format has
    no error message, so every error closes with its code and name only).
    ``ending``: errors from ``serve`` that close even though their kind
    usually leaves a connection open. ``explain``: close reasons carry the
    error's message too (for formats without error messages).
    ``acknowledges``: ``serve`` answers every message it reads (an ack or an
    error), so a revocation lets those answers go out before it closes
    (``Connection.revoke``).
    """

    join: Callable[[Connection, Credentials], Awaitable[S | None]]
    serve: Callable[[Connection, S], Awaitable[None]]
    render: Renderer | None
    leave: Callable[[Connection, S], Awaitable[None]] | None = None
    ending: tuple[type[ScribelineError], ...] = ()
    explain: bool = False
    acknowledges: bool = False

    async def run(self, conn: Connection, credentials: Credentials) -> None:
        """Join, serve, leave and close ``conn``, reporting any error to the client."""
        try:
            state = await self.join(conn, credentials)
        except Exception as exc:
            await report(conn, exc, self.render, refusal=True, explain=self.explain)
            await conn.close(CloseCode.NORMAL)
            return
        if state is None:
            await conn.close(CloseCode.NORMAL)
            return
        try:
            await self.serve(conn, state)
        except Exception as exc:
            await report(
                conn,
                exc,
                self.render,
                refusal=isinstance(exc, self.ending),
                explain=self.explain,
            )
        finally:
            if self.leave is not None:
                await self.leave(conn, state)
            await conn.close(CloseCode.NORMAL)


async def serve_websocket(
    request: web.Request,
    endpoint: Endpoint[S],
    messages_per_second: float | None = None,
    *,
    pace: bool = False,
    max_frame_bytes: int | None = None,
) -> web.StreamResponse:
    """Accept the upgrade and run ``endpoint`` on it (see :func:`open_websocket`
    for the options)."""
    services = request.app[SERVICES]
    credentials = websocket_credentials(request)
    conn = await open_websocket(
        request,
        services,
        credentials,
        messages_per_second,
        pace=pace,
        max_frame_bytes=max_frame_bytes,
        render=endpoint.render,
        explain=endpoint.explain,
        acknowledges=endpoint.acknowledges,
    )
    await endpoint.run(conn, credentials)
    return conn.ws


async def open_websocket(
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
) -> Connection:
    """Accept the upgrade (echoing a token subprotocol) and wrap it in a Connection.

    ``messages_per_second`` and ``max_frame_bytes`` default to the
    subscribers' limits; with ``pace`` a client over the rate is slowed down
    instead of refused. ``render``, ``explain`` and ``acknowledges`` are the
    endpoint's (how the connection says its key was revoked).
    """
    s = services.settings
    ws = web.WebSocketResponse(
        protocols=(credentials.subprotocol,) if credentials.subprotocol else (),
        compress=False,  # one frame for all subscribers (DESIGN.md)
        autoping=False,  # pings are the registry's; pongs are seen by Connection
        # aiohttp refuses a frame of exactly max_msg_size; the limit is the largest allowed.
        max_msg_size=(max_frame_bytes or s.max_frame_bytes) + 1,
        timeout=s.close_timeout,
    )
    writer = await ws.prepare(request)
    return Connection(
        ws,
        request,
        writer,
        services.registry,
        limit=s.send_buffer_bytes,
        messages_per_second=messages_per_second or s.client_messages_per_second,
        close_timeout=s.close_timeout,
        socket_send_buffer=s.socket_send_buffer_bytes,
        pace=pace,
        render=render,
        explain=explain,
        acknowledges=acknowledges,
    )


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
