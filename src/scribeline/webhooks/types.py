"""Which stored events are webhook events, and the body each is delivered with. Pure.

Storage asks :func:`webhook_type` inside an append's transaction (the outbox
rows are written with the events); the deliverer builds the body from the
stored event when it sends it, so the body is what is stored (redacted) and a
deleted call leaves nothing to send.
"""

from __future__ import annotations

from typing import Any

import orjson

from scribeline.events import BotEventType, EventType, format_ms

__all__ = ["ALERT", "EVENT_TYPES", "body_of", "message_id", "subject_key", "webhook_type"]

#: The type of an alert event on a call's stream.
ALERT = "alert"

#: Every webhook event type, in the order the docs list them.
EVENT_TYPES: tuple[str, ...] = (
    "call.started",
    "call.ended",
    "transcript.final",
    "alert",
    "campaign.completed",
    "bot.stopped",
)


def webhook_type(
    stream: str, seq: int, event_type: str, data: dict[str, Any], closes: bool
) -> str | None:
    """The webhook event type of a stored event (None: it is not delivered)."""
    kind = stream.partition(":")[0]
    if kind == "call":
        if event_type == EventType.CALL_STATUS:
            if seq == 1:  # the status a call is created with
                return "call.started"
            return "call.ended" if closes else None
        if event_type == EventType.TRANSCRIPT:
            return "transcript.final" if data.get("is_final") is True else None
        return "alert" if event_type == ALERT else None
    if kind == "campaign":
        return "campaign.completed" if event_type == EventType.CAMPAIGN_COMPLETED else None
    if kind == "bot" and event_type in (BotEventType.STOP, BotEventType.ERROR):
        return "bot.stopped"
    return None


def subject_key(stream: str) -> tuple[str, int]:
    """A stream's kind (``call``, ``bot``, ``campaign``) and row id."""
    kind, _, key = stream.partition(":")
    return kind, int(key)


def message_id(endpoint_id: int, stream: str, seq: int) -> str:
    """The ``webhook-id``: stable for one event and endpoint (a retry or a replay
    keeps it, so a receiver can drop what it already has)."""
    return f"msg_{endpoint_id}_{stream.replace(':', '_')}_{seq}"


def body_of(
    event_type: str,
    stream: str,
    seq: int,
    ts: int,
    stored_type: str,
    data: dict[str, Any],
    subject: str | None,
) -> bytes:
    """The JSON body: ``type``, ``timestamp`` (the event's) and ``data``, which is
    the stored event's data with ``seq`` and what names its call, campaign or bot
    (a bot's also says whether it stopped or failed: ``event`` ``stop``/``error``)."""
    kind, key = subject_key(stream)
    named: dict[str, Any]
    if kind == "call":
        named = {"call_sid": subject}
    elif kind == "bot":
        named = {"bot_id": subject}
    else:
        named = {"campaign_id": key}
    if kind == "bot":
        named["event"] = stored_type
    return orjson.dumps(
        {
            "type": event_type,
            "timestamp": format_ms(ts),
            "data": {**data, **named, "seq": seq},
        }
    )
