"""The organization event stream (PROTOCOL.md section 3). Pure.

Clients subscribe to topics with a filter; events go out in the same shapes
as the per-call and per-campaign streams. Filters: ``*`` (everything of the
organization), a call SID, a bot id, or ``assistant:<id>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from scribeline.errors import InvalidMessage, ScribelineError
from scribeline.events import EventType, StoredEvent, format_ms
from scribeline.ingest.models import CALL_SID_PATTERN
from scribeline.protocols import campaign_progress, live_transcript, meeting_bot
from scribeline.protocols.common import decode_object, encode_pong

__all__ = [
    "TOPICS",
    "Ping",
    "Subscription",
    "decode_client",
    "encode_ack",
    "encode_connected",
    "encode_error",
    "encode_event",
    "encode_pong",
    "filter_key",
    "match_keys",
    "matches",
    "topic_of",
]

TOPICS = frozenset({"transcription", "call_status", "campaign", "meeting", "alert"})

_TOPIC_OF: dict[str, str] = {
    EventType.TRANSCRIPT: "transcription",
    EventType.CALL_STATUS: "call_status",
    EventType.CONTACT_UPDATE: "campaign",
    EventType.CONTACT_COMPLETED: "campaign",
    EventType.PROGRESS: "campaign",
    EventType.CAMPAIGN_COMPLETED: "campaign",
    EventType.ALERT: "alert",
}
_ASSISTANT = re.compile(r"assistant:[1-9][0-9]{0,17}")
_FILTER = re.compile(rf"\*|assistant:[1-9][0-9]{{0,17}}|{CALL_SID_PATTERN[1:-1]}")


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscribe (``add``) or unsubscribe action."""

    add: bool
    topic: str
    filter: str


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"type":"ping"}``."""


def decode_client(text: str | bytes) -> Subscription | Ping:
    message = decode_object(text)
    if message.get("type") == "ping":
        return Ping()
    action = message.get("action")
    if action not in ("subscribe", "unsubscribe"):
        raise InvalidMessage("action must be 'subscribe' or 'unsubscribe'")
    topic = message.get("topic")
    if topic not in TOPICS:
        raise InvalidMessage(f"topic must be one of {', '.join(sorted(TOPICS))}")
    filter_ = message.get("filter", "*")
    if not isinstance(filter_, str) or not _FILTER.fullmatch(filter_):
        raise InvalidMessage("filter must be '*', a call SID, a bot id, or 'assistant:<id>'")
    if filter_.startswith("assistant:") and not _ASSISTANT.fullmatch(filter_):
        # ':' is valid in a call SID, but this prefix always means an assistant.
        raise InvalidMessage("an assistant filter is 'assistant:<id>' with a numeric id")
    return Subscription(action == "subscribe", topic, filter_)


def topic_of(event_type: str, meta: dict[str, Any]) -> str | None:
    """The topic of an event, from its type (calls, campaigns) or its stream (bots)."""
    if "bot_id" in meta:
        return "meeting"
    return _TOPIC_OF.get(event_type)


def filter_key(filter_: str) -> str:
    """The index key of a (valid) filter: ``*``, ``assistant:<id>``, or ``id:`` and a
    call SID or bot id. The prefix keeps a call SID that happens to look like
    ``assistant:7`` (``:`` is valid in a SID) from being taken for an assistant."""
    if filter_ == "*" or filter_.startswith("assistant:"):
        return filter_
    return "id:" + filter_


def match_keys(meta: dict[str, Any]) -> tuple[str, ...]:
    """The keys of the filters an event with this routing metadata passes."""
    keys = ["*"]
    assistant = meta.get("assistant_id")
    if assistant is not None:
        keys.append(f"assistant:{assistant}")
    for name in ("call_sid", "bot_id"):
        value = meta.get(name)
        if value is not None:
            keys.append(f"id:{value}")
    return tuple(keys)


def matches(filter_: str, meta: dict[str, Any]) -> bool:
    """Whether an event with this routing metadata passes the filter."""
    return filter_key(filter_) in match_keys(meta)


def encode_event(event: StoredEvent, meta: dict[str, Any]) -> bytes | None:
    """The event in its per-call, per-campaign or per-bot shape."""
    if "bot_id" in meta:
        return meeting_bot.encode_org_event(str(meta["bot_id"]), event)
    if "campaign_id" in meta:
        return campaign_progress.encode_event(int(meta["campaign_id"]), event)
    return live_transcript.encode_event(str(meta["call_sid"]), event)


def encode_connected(now: int) -> bytes:
    return orjson.dumps(
        {
            "type": "connection_established",
            "timestamp": format_ms(now),
            "message": "Connected to organization event stream",
        }
    )


def encode_ack(subscription: Subscription) -> bytes:
    return orjson.dumps(
        {
            "type": "subscribed" if subscription.add else "unsubscribed",
            "topic": subscription.topic,
            "filter": subscription.filter,
        }
    )


def encode_error(error: ScribelineError, now: int) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "timestamp": format_ms(now),
            "error": error.code,
            "message": error.message,
        }
    )
