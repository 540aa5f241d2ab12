"""``GET /v1/events``: the organization event stream (PROTOCOL.md section 3).

Each subscription joins the organization's firehose (one broker subscription
per organization per process), where subscriptions are indexed by what they
match, so an event costs in proportion to who wants it. Only the
credential's organization is ever reachable: the channel is chosen by the
credential, never by the client.
"""

from __future__ import annotations

from aiohttp import web

from scribeline.api.state import SERVICES
from scribeline.api.websocket import Endpoint, authenticate, serve_websocket
from scribeline.auth import Credentials
from scribeline.broker import org_channel
from scribeline.connection import Connection, Inbound
from scribeline.errors import InvalidMessage, RateLimited, ScribelineError
from scribeline.events import now_ms
from scribeline.protocols import org_events as proto

__all__ = ["event_stream"]


def _render_error(error: ScribelineError) -> bytes:
    return proto.encode_error(error, now_ms())


async def event_stream(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]

    async def join(conn: Connection, credentials: Credentials) -> str:
        principal = await authenticate(services, conn, credentials.token)
        principal.require("read")
        principal.allow_organization()
        conn.send(proto.encode_connected(now_ms()))
        return org_channel(principal.org_id)

    async def answer(conn: Connection, channel: str, message: Inbound) -> None:
        try:
            action = proto.decode_client(message.text())
            if isinstance(action, proto.Ping):
                conn.send(proto.encode_pong(now_ms()))
                return
            if action.add:
                await services.hub.subscribe_firehose(channel, conn, action.topic, action.filter)
            else:
                await services.hub.unsubscribe_firehose(channel, conn, action.topic, action.filter)
            conn.send(proto.encode_ack(action))
        except (InvalidMessage, RateLimited) as exc:
            conn.send(_render_error(exc))

    async def leave(conn: Connection, channel: str) -> None:
        await services.hub.detach_firehose(channel, conn)

    endpoint = Endpoint(join, None, _render_error, leave, answer=answer)
    return await serve_websocket(request, endpoint)
