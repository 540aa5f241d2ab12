"""The campaign progress wire format (PROTOCOL.md section 2). Pure.

``progress`` counters live in ``data`` and are mirrored at the top level,
where the published Burki Python SDK reads them.
"""

from __future__ import annotations

from typing import Any

import orjson

from scribeline.errors import InvalidMessage, ScribelineError
from scribeline.events import EventType, StoredEvent, format_ms
from scribeline.protocols.common import decode_json, encode_pong

__all__ = [
    "decode_client",
    "encode_connected",
    "encode_error",
    "encode_event",
    "encode_pong",
    "encode_progress",
]


def encode_connected(campaign_id: int, now: int) -> bytes:
    return orjson.dumps(
        {
            "type": "connection_established",
            "campaign_id": campaign_id,
            "timestamp": format_ms(now),
            "message": "Connected to campaign progress stream",
        }
    )


def encode_progress(campaign_id: int, counters: dict[str, Any], ts: int) -> bytes:
    return orjson.dumps(
        {
            "type": "progress",
            "campaign_id": campaign_id,
            "timestamp": format_ms(ts),
            "data": counters,
            **counters,
        }
    )


def encode_event(campaign_id: int, event: StoredEvent) -> bytes | None:
    """A stored campaign event as a client message (None for kinds not shown)."""
    if event.type == EventType.PROGRESS:
        return encode_progress(campaign_id, event.data, event.ts)
    if event.type == EventType.CONTACT_COMPLETED:
        data = {k: v for k, v in event.data.items() if k != "counters"}
    elif event.type == EventType.CAMPAIGN_COMPLETED:
        data = event.data
    else:
        return None
    return orjson.dumps(
        {
            "type": event.type,
            "campaign_id": campaign_id,
            "timestamp": format_ms(event.ts),
            "data": data,
        }
    )


def decode_client(text: str | bytes) -> None:
    """The only client message is ``{"type":"ping"}``; anything else is invalid."""
    message = decode_json(text)
    if not isinstance(message, dict) or message.get("type") != "ping":
        raise InvalidMessage("Unknown message type; expected 'ping'")


def encode_error(campaign_id: int, error: ScribelineError, now: int) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "campaign_id": campaign_id,
            "timestamp": format_ms(now),
            "error": error.code,
            "message": error.message,
        }
    )
