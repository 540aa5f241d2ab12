"""Alerts before they are stored: what a firing records, and the event it appends.

Pure. Storage appends an ``alert`` event only for the firings (rule, stream,
segment) it had not recorded, numbered in the call, and records them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from scribeline.alerts.rules import AlertRule, Final, Match, segment_key
from scribeline.events import EventType, NewEvent

__all__ = ["AlertDraft", "alert_data", "draft", "new_firings", "numbered"]


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """A firing of rule ``rule_id`` on a segment (``segment``: see
    ``rules.segment_key``) of a stream, and its alert's data and time."""

    rule_id: int
    segment: str
    data: dict[str, Any]
    ts: int


def alert_data(rule: AlertRule, final: Final, match: Match) -> dict[str, Any]:
    """An ``alert`` event's data (docs/protocol.md, "Alerts")."""
    data: dict[str, Any] = {
        "rule": {"id": rule.id, "name": rule.name, "kind": rule.kind},
        "segment_seq": final.seq,
        "segment_id": final.segment_id,
        "speaker": final.speaker,
        "matched": match.matched,
    }
    if match.score is not None:
        data["score"] = match.score
    return data


def draft(rule: AlertRule, final: Final, match: Match, ts: int) -> AlertDraft:
    return AlertDraft(rule.id, segment_key(final), alert_data(rule, final, match), ts)


def new_firings(
    drafts: Sequence[AlertDraft], recorded: Collection[tuple[int, str]]
) -> list[AlertDraft]:
    """The drafts whose firing (``(rule, segment)``) is not in ``recorded``, each
    once, in order."""
    seen = set(recorded)
    fresh = []
    for item in drafts:
        key = (item.rule_id, item.segment)
        if key not in seen:
            seen.add(key)
            fresh.append(item)
    return fresh


def numbered(drafts: Sequence[AlertDraft], before: int) -> list[NewEvent]:
    """The drafts' events, each with ``number``: its place among the call's
    alerts, after the ``before`` it already had."""
    return [
        NewEvent(EventType.ALERT, {**item.data, "number": before + n}, ts=item.ts)
        for n, item in enumerate(drafts, 1)
    ]
