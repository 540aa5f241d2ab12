"""The campaign progress wire format (PROTOCOL.md section 2). Pure.

``data`` is canonical. The published Burki Python SDK (0.1.2) reads fields at
the top level instead, so they are rendered there too, in the shapes its
pydantic models accept:

* ``progress``: the counters mirrored, and the latest contact change as
  ``contact_id``, ``contact_phone``, ``contact_status``, ``contact_error``;
* ``contact_update``: ``contact_id``, ``phone_number``, ``status``,
  ``call_sid``, ``call_duration``, ``error_message``;
* ``campaign_completed``: the summary mirrored.

Statuses at the top level are the SDK's (``completed`` where we say
``success``), and durations there are whole seconds: the SDK types them
``int`` and rejects a fractional number.
"""

from __future__ import annotations

from typing import Any

import orjson

from scribeline.domain import LATEST_CONTACT
from scribeline.errors import InvalidMessage, ScribelineError
from scribeline.events import EventType, StoredEvent, format_ms
from scribeline.protocols.common import decode_json, encode_pong

__all__ = [
    "LATEST_CONTACT",
    "decode_client",
    "encode_connected",
    "encode_error",
    "encode_event",
    "encode_pong",
    "encode_progress",
    "sdk_status",
    "whole_seconds",
]

#: Contact statuses the SDK spells differently (the rest are the same).
_SDK_STATUS = {"success": "completed"}

#: Past this many seconds a duration is clamped, so the integer stays within
#: the 64 bits JSON encoders and decoders handle.
_MAX_SECONDS = 2**53


def sdk_status(status: str) -> str:
    """A contact status as the Burki SDK names it."""
    return _SDK_STATUS.get(status, status)


def whole_seconds(duration: float) -> int:
    """A duration in seconds rounded to the nearest whole second (halves up)."""
    return int(min(max(duration, 0.0), _MAX_SECONDS) + 0.5)


def encode_connected(campaign_id: int, now: int) -> bytes:
    return orjson.dumps(
        {
            "type": "connection_established",
            "campaign_id": campaign_id,
            "timestamp": format_ms(now),
            "message": "Connected to campaign progress stream",
        }
    )


def _latest_fields(latest: dict[str, Any] | None) -> dict[str, Any]:
    """The latest contact change as the SDK reads it from a progress event."""
    if latest is None:
        return {}
    return {
        "contact_id": latest["contact_id"],
        "contact_phone": latest["phone_number"],
        "contact_status": sdk_status(latest["status"]),
        "contact_error": latest.get("error"),
    }


def encode_progress(campaign_id: int, counters: dict[str, Any], ts: int) -> bytes:
    """A progress message: ``counters`` (with ``latest_contact`` when known) in
    ``data``, the counters and the latest contact's fields at the top level."""
    mirrored = {k: v for k, v in counters.items() if k != LATEST_CONTACT}
    return orjson.dumps(
        {
            "type": "progress",
            "campaign_id": campaign_id,
            "timestamp": format_ms(ts),
            "data": counters,
            **mirrored,
            **_latest_fields(counters.get(LATEST_CONTACT)),
        }
    )


def _contact_update_fields(data: dict[str, Any]) -> dict[str, Any]:
    duration = data.get("duration")
    return {
        "contact_id": data["contact_id"],
        "phone_number": data["phone_number"],
        "status": sdk_status(data["status"]),
        "call_sid": data.get("call_sid"),
        "call_duration": None if duration is None else whole_seconds(duration),
        "error_message": data.get("error"),
    }


def _summary_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "total_duration": whole_seconds(data["total_duration"])}


def encode_event(campaign_id: int, event: StoredEvent) -> bytes | None:
    """A stored campaign event as a client message (None for kinds not shown)."""
    if event.type == EventType.PROGRESS:
        return encode_progress(campaign_id, event.data, event.ts)
    top: dict[str, Any] = {}
    if event.type == EventType.CONTACT_UPDATE:
        data = event.data
        top = _contact_update_fields(data)
    elif event.type == EventType.CONTACT_COMPLETED:
        data = {k: v for k, v in event.data.items() if k != "counters"}
    elif event.type == EventType.CAMPAIGN_COMPLETED:
        data = event.data
        top = _summary_fields(data)
    else:
        return None
    return orjson.dumps(
        {
            "type": event.type,
            "campaign_id": campaign_id,
            "timestamp": format_ms(event.ts),
            "data": data,
            **top,
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
