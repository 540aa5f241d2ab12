"""``GET /live-transcript/{call_sid}``: the Burki-compatible stream (PROTOCOL.md section 1)."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from scribeline.api.params import query_int
from scribeline.api.state import SERVICES, Services
from scribeline.api.websocket import (
    Endpoint,
    authorize_call,
    detach_stream,
    join_stream,
    serve_websocket,
)
from scribeline.auth import Credentials
from scribeline.connection import Connection, Inbound
from scribeline.errors import InvalidMessage, ScribelineError
from scribeline.events import TERMINAL_STATUSES, Position, now_ms
from scribeline.hub import CaughtUp
from scribeline.ingest.calls import CallService
from scribeline.protocols import live_transcript as proto
from scribeline.recovery import start_after

__all__ = ["live_transcript"]

FORMAT = "live-transcript"


async def live_transcript(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    call_sid = request.match_info["call_sid"]
    query = request.query  # not the request: the connection outlives it

    async def join(conn: Connection, credentials: Credentials) -> tuple[int, str]:
        since = query_int(query, "since", None)  # refused on the socket, like every check
        return await _join(services, conn, call_sid, credentials.token, since, query.get("epoch"))

    async def answer(conn: Connection, joined: tuple[int, str], message: Inbound) -> None:
        await _answer(conn, services.calls, joined[0], call_sid, message)

    async def leave(conn: Connection, joined: tuple[int, str]) -> None:
        await detach_stream(services, conn, joined[1])

    render = partial(_render_error, call_sid)
    return await serve_websocket(request, Endpoint(join, None, render, leave, answer=answer))


async def _join(
    services: Services,
    conn: Connection,
    call_sid: str,
    token: str | None,
    since: int | None,
    epoch: str | None,
) -> tuple[int, str]:
    """Checks, then history and the switch to live; returns (organization, stream).

    A separate coroutine so that what joining needs (the call's history above
    all) is released once the connection is live, not held for its lifetime.
    """
    principal, call = await authorize_call(services, conn, call_sid, token, "read")
    stream = call.stream
    encoder = partial(proto.encode_event, call_sid)

    async def catch_up(position: Position) -> CaughtUp:
        # The head is read after attaching: history up to it, live events after it.
        start = start_after(since, epoch, position)
        now = now_ms()
        conn.send(proto.encode_connected(call_sid, now, position.epoch, start))
        conn.send(proto.encode_status_snapshot(call, now))
        covered, ended = await services.calls.replay(conn, call, start, position.seq, encoder)
        # Everything of an ended call is in storage, so history was all of it.
        return CaughtUp(covered, ended or call.status in TERMINAL_STATUSES)

    join = partial(services.hub.join, stream, conn, FORMAT, encoder, catch_up)
    await join_stream(services, conn, stream, "call", join)
    return principal.org_id, stream


def _render_error(call_sid: str, error: ScribelineError) -> bytes:
    return proto.encode_error(call_sid, error, now_ms())


async def _answer(
    conn: Connection, calls: CallService, org_id: int, call_sid: str, message: Inbound
) -> None:
    """Answer ``ping`` or ``request_status``."""
    try:
        command = proto.decode_client(message.text())
        if isinstance(command, proto.Ping):
            conn.send(proto.encode_pong(now_ms()))
        else:
            call = await calls.get(org_id, call_sid)
            conn.send(proto.encode_status_snapshot(call, now_ms()))
    except InvalidMessage as exc:
        conn.send(_render_error(call_sid, exc))
