"""Typed events of the streams, parsed from their wire messages (pure).

Each class keeps the message it came from in ``raw``, so a field this version
does not model is still at hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TERMINAL_STATUSES",
    "AlertEvent",
    "BotEvent",
    "CampaignCompleted",
    "CampaignProgress",
    "ContactCompleted",
    "ErrorEvent",
    "Event",
    "StatusEvent",
    "TranscriptEvent",
    "parse_call_message",
    "parse_campaign_message",
]

TERMINAL_STATUSES = frozenset({"completed", "failed", "busy", "no-answer", "canceled"})


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    """A transcript segment of a call. ``is_final`` False: an interim result that a
    later event with the same ``segment_id`` replaces."""

    call_sid: str
    seq: int
    content: str
    speaker: str | None
    is_final: bool
    confidence: float | None
    segment_start: float | None
    segment_end: float | None
    segment_id: str | None
    timestamp: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A call's status. ``seq`` is None for the snapshot sent when a stream opens."""

    call_sid: str
    seq: int | None
    status: str
    metadata: dict[str, Any]
    timestamp: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        """Whether the call has ended with this status."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert rule of the organization fired on a final of the call.
    ``data`` holds the rule (``id``, ``name``, ``kind``), the final's
    ``segment_seq``, ``segment_id`` and ``speaker``, the ``matched`` text and,
    for sentiment, its ``score`` (docs/protocol.md, "Alerts")."""

    call_sid: str
    seq: int
    data: dict[str, Any]
    timestamp: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def rule_name(self) -> str:
        rule = self.data.get("rule")
        return str(rule.get("name", "")) if isinstance(rule, dict) else ""


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An error the server reported on an open stream that stays open."""

    code: str
    message: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class CampaignProgress:
    campaign_id: int
    counters: dict[str, Any]
    timestamp: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ContactCompleted:
    campaign_id: int
    data: dict[str, Any]
    timestamp: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class CampaignCompleted:
    campaign_id: int
    summary: dict[str, Any]
    timestamp: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class BotEvent:
    """A meeting bot's event: ``type`` is ``ts``, ``chat-message``, ``stop``..."""

    type: str
    data: dict[str, Any]
    bot_id: str | None = None
    seq: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ends(self) -> bool:
        """Whether this event ends the bot (``stop`` or ``error``)."""
        return self.type in ("stop", "error")


Event = (
    TranscriptEvent
    | StatusEvent
    | AlertEvent
    | ErrorEvent
    | CampaignProgress
    | ContactCompleted
    | CampaignCompleted
    | BotEvent
)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def parse_call_message(
    msg: dict[str, Any],
) -> TranscriptEvent | StatusEvent | AlertEvent | ErrorEvent | None:
    """A live-transcript message as an event (None: not an event, e.g. a pong, or
    a type this version does not know)."""
    kind = msg.get("type")
    if kind == "transcript":
        data = msg.get("data") or {}
        return TranscriptEvent(
            call_sid=str(msg.get("call_sid", "")),
            seq=int(msg["seq"]),
            content=str(data.get("content", "")),
            speaker=data.get("speaker"),
            is_final=bool(data.get("is_final", True)),
            confidence=_float(data.get("confidence")),
            segment_start=_float(data.get("segment_start")),
            segment_end=_float(data.get("segment_end")),
            segment_id=data.get("segment_id"),
            timestamp=str(msg.get("timestamp", "")),
            raw=msg,
        )
    if kind == "call_status":
        seq = msg.get("seq")
        return StatusEvent(
            call_sid=str(msg.get("call_sid", "")),
            seq=int(seq) if seq is not None else None,
            status=str(msg.get("status", "")),
            metadata=dict(msg.get("metadata") or {}),
            timestamp=str(msg.get("timestamp", "")),
            raw=msg,
        )
    if kind == "alert":
        return AlertEvent(
            call_sid=str(msg.get("call_sid", "")),
            seq=int(msg["seq"]),
            data=dict(msg.get("data") or {}),
            timestamp=str(msg.get("timestamp", "")),
            raw=msg,
        )
    if kind == "error":
        return ErrorEvent(str(msg.get("error", "")), str(msg.get("message", "")), msg)
    return None


def parse_campaign_message(
    msg: dict[str, Any],
) -> CampaignProgress | ContactCompleted | CampaignCompleted | ErrorEvent | None:
    """A campaign-progress message as an event (None: not an event)."""
    kind = msg.get("type")
    campaign_id = int(msg.get("campaign_id", 0))
    timestamp = str(msg.get("timestamp", ""))
    data = dict(msg.get("data") or {})
    if kind == "progress":
        return CampaignProgress(campaign_id, data, timestamp, msg)
    if kind == "contact_completed":
        return ContactCompleted(campaign_id, data, timestamp, msg)
    if kind == "campaign_completed":
        return CampaignCompleted(campaign_id, data, timestamp, msg)
    if kind == "error":
        return ErrorEvent(str(msg.get("error", "")), str(msg.get("message", "")), msg)
    return None
