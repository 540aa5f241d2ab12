"""The wire formats as stream sessions: URL and resume position, which messages
are events, and when a stream is over (PROTOCOL.md sections 1 to 4)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import orjson
from websockets.asyncio.client import ClientConnection

from scribeline.client.events import (
    AlertEvent,
    BotEvent,
    CampaignCompleted,
    CampaignProgress,
    ContactCompleted,
    ErrorEvent,
    StatusEvent,
    TranscriptEvent,
    parse_call_message,
    parse_campaign_message,
)
from scribeline.client.stream import Session

__all__ = [
    "BotSession",
    "CallEvent",
    "CampaignEvent",
    "CampaignSession",
    "EventsSession",
    "LiveTranscriptSession",
    "OrgEvent",
]

CallEvent = TranscriptEvent | StatusEvent | AlertEvent | ErrorEvent
CampaignEvent = CampaignProgress | ContactCompleted | CampaignCompleted | ErrorEvent
OrgEvent = CallEvent | CampaignEvent | BotEvent

_PING = orjson.dumps({"type": "ping"})

E = TypeVar("E")

log = logging.getLogger(__name__)


class _Refusable(Session[E]):
    """The pattern of sections 1 to 3: a refusal is an ``error`` message before the
    stream is established, then close 1008."""

    _refusal: ErrorEvent | None = None

    def connecting(self) -> None:
        # A new connection: its refusal, if any, is its own (an error left over from
        # the last one must not explain this one's close, nor be yielded as an event).
        super().connecting()
        self._refusal = None

    def refusal(self) -> ErrorEvent | None:
        return self._refusal

    def _error(self, message: dict[str, Any]) -> Iterable[ErrorEvent]:
        error = ErrorEvent(str(message.get("error", "")), str(message.get("message", "")), message)
        self._refusal = error  # if a 1008 close follows, this is why
        return (error,) if self._established else ()


class LiveTranscriptSession(_Refusable[CallEvent]):
    """``/live-transcript/{call_sid}``, resumed with ``since`` (and ``epoch``), so
    across reconnections every stored event is yielded once, in seq order.

    The server says where a connection's history starts (``since`` in
    ``connection_established``). When that is before our position, it replays
    from there, because our position is beyond the stream (a ``since`` larger
    than the call's last seq, or a store that was reset, which a new ``epoch``
    also tells older servers): the session adopts it, with a warning, so that
    the events it would otherwise drop as already seen are yielded.

    The ``call_status`` snapshot (no seq) is yielded once, from the first
    connection; later ones are covered by the stored events in between.
    """

    app_ping = _PING

    def __init__(self, base: str, call_sid: str, since: int | None, finals_only: bool) -> None:
        super().__init__()
        self._base = base
        self._call_sid = call_sid
        self.last_seq = since or 0
        self.epoch: str | None = None
        self._finals_only = finals_only
        self._snapshot_sent = False

    def url(self) -> str:
        query: dict[str, Any] = {}
        if self.last_seq:
            query["since"] = self.last_seq
            if self.epoch:
                query["epoch"] = self.epoch
        path = f"{self._base}/live-transcript/{quote(self._call_sid, safe='')}"
        return path + ("?" + urlencode(query) if query else "")

    def handle(self, message: dict[str, Any]) -> Iterable[CallEvent]:
        kind = message.get("type")
        if kind == "connection_established":
            self._established = True
            epoch = message.get("epoch")
            self._start_after(message.get("since"), epoch)
            self.epoch = epoch if isinstance(epoch, str) else None
            return ()
        if kind == "error":
            return self._error(message)
        event = parse_call_message(message)
        if event is None or isinstance(event, ErrorEvent):
            return ()
        if event.seq is None:  # a status snapshot
            if self._snapshot_sent:
                return ()
            self._snapshot_sent = True
            return (event,)
        if event.seq <= self.last_seq:
            return ()
        self.last_seq = event.seq
        self._snapshot_sent = True
        if self._finals_only and isinstance(event, TranscriptEvent) and not event.is_final:
            return ()
        return (event,)

    def _start_after(self, since: Any, epoch: Any) -> None:
        """Adopt where the server starts this connection's history, if that is
        before our position (else events it replays would be dropped)."""
        if isinstance(since, int) and not isinstance(since, bool) and since >= 0:
            start = since
        elif self.epoch is not None and epoch != self.epoch:
            start = 0  # an older server without ``since``: a new epoch replays all
        else:
            return
        if start >= self.last_seq:
            return
        log.warning(
            "call %s: seq %d is beyond what the server holds (a seq past the call's last,"
            " or a reset store); it replays the call %s",
            self._call_sid,
            self.last_seq,
            "from the start" if start == 0 else f"after seq {start}",
        )
        self.last_seq = start


class CampaignSession(_Refusable[CampaignEvent]):
    """``/ws/campaigns/{id}/progress``: live only. After a reconnection the server's
    ``progress`` snapshot brings the counters up to date; contact results that
    happened while disconnected are not replayed."""

    app_ping = _PING

    def __init__(self, base: str, campaign_id: int) -> None:
        super().__init__()
        self._base = base
        self._campaign_id = campaign_id

    def url(self) -> str:
        return f"{self._base}/ws/campaigns/{self._campaign_id}/progress"

    def handle(self, message: dict[str, Any]) -> Iterable[CampaignEvent]:
        kind = message.get("type")
        if kind == "connection_established":
            self._established = True
            return ()
        if kind == "error":
            return self._error(message)
        event = parse_campaign_message(message)
        return () if event is None or isinstance(event, ErrorEvent) else (event,)


class EventsSession(_Refusable[OrgEvent]):
    """``/v1/events``: subscribes to ``topics`` with ``filter`` on every connection.
    Live only: events published while disconnected are not replayed."""

    app_ping = _PING

    def __init__(self, base: str, topics: Sequence[str], filter_: str) -> None:
        super().__init__()
        self._base = base
        self._topics = list(topics)
        self._filter = filter_

    def url(self) -> str:
        return f"{self._base}/v1/events"

    async def opened(self, ws: ClientConnection) -> None:
        for topic in self._topics:
            body = {"action": "subscribe", "topic": topic, "filter": self._filter}
            await ws.send(orjson.dumps(body).decode())

    def handle(self, message: dict[str, Any]) -> Iterable[OrgEvent]:
        kind = message.get("type")
        if kind == "connection_established":
            self._established = True
            return ()
        if kind == "error":
            return self._error(message)
        if kind in ("subscribed", "unsubscribed", "pong"):
            return ()
        if "bot_id" in message:
            seq = message.get("seq")
            return (
                BotEvent(
                    str(kind),
                    dict(message.get("data") or {}),
                    str(message["bot_id"]),
                    int(seq) if seq is not None else None,
                    message,
                ),
            )
        event: OrgEvent | None = (
            parse_campaign_message(message)
            if "campaign_id" in message
            else parse_call_message(message)
        )
        return () if event is None else (event,)


class BotSession(Session[BotEvent]):
    """A meeting bot's ``websocket_url`` or ``websocket_read_only_url``: live only.
    The server's ``ping`` events are keep-alive, not yielded. The stream ends
    with ``stop`` or ``error`` (close 1000)."""

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self) -> str:
        return self._url

    async def opened(self, ws: ClientConnection) -> None:
        self._established = True  # refusals here are close codes with a reason

    def handle(self, message: dict[str, Any]) -> Iterable[BotEvent]:
        kind = message.get("type")
        if not isinstance(kind, str) or kind == "ping":
            return ()
        return (BotEvent(kind, dict(message.get("data") or {}), raw=message),)
