"""``GET /v1/events``: the organization event stream (PROTOCOL.md section 3).

The connection joins its organization's firehose (one broker subscription per
organization per process) on its first subscription and filters each event
against its own subscriptions. Only the credential's organization is ever
reachable: the channel is chosen by the credential, never by the client.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from scribeline.api.state import SERVICES
from scribeline.api.websocket import open_websocket, report
from scribeline.auth import extract_credentials
from scribeline.broker import org_channel
from scribeline.errors import CloseCode, InvalidMessage, RateLimited, ScribelineError
from scribeline.events import now_ms
from scribeline.protocols import org_events as proto

__all__ = ["event_stream"]


class Subscriptions:
    """One connection's topics and filters."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._by_topic: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return sum(len(filters) for filters in self._by_topic.values())

    def apply(self, action: proto.Subscription) -> None:
        filters = self._by_topic.setdefault(action.topic, set())
        if action.add:
            if action.filter not in filters and len(self) >= self._limit:
                raise RateLimited(f"At most {self._limit} subscriptions per connection")
            filters.add(action.filter)
        else:
            filters.discard(action.filter)

    def accept(self, event_type: str, meta: dict[str, Any]) -> bool:
        topic = proto.topic_of(event_type, meta)
        filters = self._by_topic.get(topic) if topic is not None else None
        return bool(filters) and any(proto.matches(f, meta) for f in filters or ())


def _render_error(error: ScribelineError) -> bytes:
    return proto.encode_error(error, now_ms())


async def event_stream(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    credentials = extract_credentials(request)
    conn = await open_websocket(request, services, credentials)
    try:
        principal = await services.auth.authenticate(credentials.token)
        principal.require("read")
        principal.allow_organization()
    except Exception as exc:
        await report(conn, exc, _render_error, refusal=True)
        await conn.close(CloseCode.NORMAL)
        return conn.ws
    channel = org_channel(principal.org_id)
    subscriptions = Subscriptions(services.settings.max_subscriptions_per_connection)
    joined = False
    conn.send(proto.encode_connected(now_ms()))
    try:
        while (message := await conn.next_message()) is not None:
            try:
                action = proto.decode_client(message.text())
                if isinstance(action, proto.Ping):
                    conn.send(proto.encode_pong(now_ms()))
                    continue
                subscriptions.apply(action)
                if not joined:
                    await services.hub.attach_firehose(channel, conn, subscriptions.accept)
                    joined = True
                conn.send(proto.encode_ack(action))
            except (InvalidMessage, RateLimited) as exc:
                conn.send(_render_error(exc))
    except Exception as exc:
        await report(conn, exc, _render_error)
    finally:
        if joined:
            await services.hub.detach_firehose(channel, conn)
        await conn.close(CloseCode.NORMAL)
    return conn.ws
