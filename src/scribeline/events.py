"""Event types shared by storage, broker, hub and protocol adapters.

An event is stored in a *stream* (one per call: ``call:<id>``) under a
sequence number assigned by storage. Events are immutable once stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

__all__ = [
    "BOT_EVENT_TYPES",
    "TERMINAL_STATUSES",
    "BotEventType",
    "CallStatus",
    "EventType",
    "NewEvent",
    "Position",
    "StoredEvent",
    "bot_stream",
    "call_stream",
    "format_ms",
    "now_ms",
]


class EventType(StrEnum):
    """Kinds of stored events."""

    TRANSCRIPT = "transcript"
    CALL_STATUS = "call_status"
    CONTACT_UPDATE = "contact_update"
    CONTACT_COMPLETED = "contact_completed"
    PROGRESS = "progress"
    CAMPAIGN_COMPLETED = "campaign_completed"
    #: An alert rule fired on a final of the call (alerts/).
    ALERT = "alert"


class BotEventType(StrEnum):
    """Events of a meeting bot's stream (PROTOCOL.md section 4), stored as sent."""

    START = "start"
    TS = "ts"
    CHAT_MESSAGE = "chat-message"
    PARTICIPANT_TRACKED = "participant-tracked"
    STARTED_SPEAKING = "started-speaking"
    STOPPED_SPEAKING = "stopped-speaking"
    STOP = "stop"
    ERROR = "error"


BOT_EVENT_TYPES: frozenset[str] = frozenset(BotEventType)


class CallStatus(StrEnum):
    """Call lifecycle states (PROTOCOL.md section 1)."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    FAILED = "failed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"


TERMINAL_STATUSES: frozenset[str] = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.FAILED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.CANCELED,
    }
)


def call_stream(call_id: int) -> str:
    """The stream key of a call (internal id, never the client-chosen SID)."""
    return f"call:{call_id}"


def bot_stream(bot_id: int) -> str:
    """The stream key of a meeting bot (internal id, never its public id)."""
    return f"bot:{bot_id}"


def now_ms() -> int:
    """Wall-clock time in integer milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: ``2026-01-19T12:00:05.123Z``."""
    second, milli = divmod(ms, 1000)
    return f"{_second_prefix(second)}{milli:03d}Z"


@lru_cache(maxsize=1024)
def _second_prefix(second: int) -> str:
    """``2026-01-19T12:00:05.``: the same for a thousand timestamps, so kept."""
    return datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream stands: the last assigned seq and the stream's epoch.

    The epoch changes when a stream's storage is reset, so a client holding a
    seq from an earlier epoch replays from the start rather than skipping.
    """

    seq: int
    epoch: str


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``closes`` marks the last event a stream accepts."""

    type: str
    data: dict[str, Any]
    closes: bool = False
    ts: int = field(default_factory=now_ms)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as storage returns it, with its assigned ``seq`` and the stream's
    ``epoch`` (the broker carries both, so a node can tell a gap from a reset)."""

    stream: str
    seq: int
    type: str
    ts: int
    data: dict[str, Any]
    closes: bool = False
    epoch: str = ""
