"""The Burki-compatible live-transcript wire format (PROTOCOL.md section 1).

Pure: stored events and call records in, JSON bytes out; client text in,
commands out. No sockets, no clocks (callers pass ``now`` in milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from scribeline.domain import Call
from scribeline.errors import InvalidMessage, ScribelineError
from scribeline.events import EventType, StoredEvent, format_ms
from scribeline.protocols.common import decode_json, encode_pong

__all__ = [
    "Ping",
    "RequestStatus",
    "decode_client",
    "encode_connected",
    "encode_error",
    "encode_event",
    "encode_pong",
    "encode_status_snapshot",
]


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"type":"ping"}``: answer with a pong."""


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """``{"type":"request_status"}``: answer with the current call status."""


ClientCommand = Ping | RequestStatus

_COMMANDS: dict[str, ClientCommand] = {"ping": Ping(), "request_status": RequestStatus()}


def decode_client(text: str | bytes) -> ClientCommand:
    """Parse a client message; raise ``InvalidMessage`` for anything not understood."""
    message = decode_json(text)
    kind = message.get("type") if isinstance(message, dict) else None
    command = _COMMANDS.get(kind) if isinstance(kind, str) else None
    if command is None:
        raise InvalidMessage("Unknown message type; expected 'ping' or 'request_status'")
    return command


def encode_connected(call_sid: str, now: int, epoch: str, since: int) -> bytes:
    """The greeting. Additions: ``epoch``, and ``since``, the seq after which this
    connection's history starts (0 when the server replays from the start,
    whatever the client asked for: its position belongs to a reset store)."""
    return orjson.dumps(
        {
            "type": "connection_established",
            "call_sid": call_sid,
            "timestamp": format_ms(now),
            "message": "Connected to live transcript stream",
            "epoch": epoch,
            "since": since,
        }
    )


def encode_status_snapshot(call: Call, now: int) -> bytes:
    """The call's current status, without ``seq`` (step 2, and ``request_status``)."""
    return orjson.dumps(
        {
            "type": "call_status",
            "call_sid": call.call_sid,
            "timestamp": format_ms(now),
            "status": call.status,
            "metadata": call.metadata(),
        }
    )


def encode_event(call_sid: str, event: StoredEvent) -> bytes:
    """A stored event of a call with its ``seq``: a transcript, a status, or any
    other type (``alert``) as ``{"type", "call_sid", "timestamp", "seq", "data"}``,
    which clients that do not know the type skip."""
    data = event.data
    message: dict[str, Any]
    if event.type == EventType.TRANSCRIPT:
        message = {
            "type": "transcript",
            "call_sid": call_sid,
            "timestamp": format_ms(event.ts),
            "seq": event.seq,
            "data": {**data, "created_at": format_ms(event.ts)},
        }
    elif event.type == EventType.CALL_STATUS:
        message = {
            "type": "call_status",
            "call_sid": call_sid,
            "timestamp": format_ms(event.ts),
            "seq": event.seq,
            "status": data["status"],
            "metadata": data.get("metadata", {}),
        }
    else:
        message = {
            "type": event.type,
            "call_sid": call_sid,
            "timestamp": format_ms(event.ts),
            "seq": event.seq,
            "data": data,
        }
    return orjson.dumps(message)


def encode_error(call_sid: str, error: ScribelineError, now: int) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "call_sid": call_sid,
            "timestamp": format_ms(now),
            "error": error.code,
            "message": error.message,
        }
    )
