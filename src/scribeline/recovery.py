"""Pure rules for what a joining subscriber is sent (DESIGN.md, "Joining a stream").

* Where history starts, given the client's ``since`` and ``epoch``.
* Which history events are shown: of each transcript segment, only the final
  (or, with no final yet, the latest partial); interim results that a later
  result of the same segment replaces are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from scribeline.events import EventType, Position, StoredEvent

__all__ = ["history_view", "start_after"]


def start_after(since: int | None, epoch: str | None, position: Position) -> int:
    """The seq after which history starts.

    A ``since`` beyond the stream's head, or from another epoch, belongs to a
    stream whose storage was reset: the client replays from the start.
    """
    if since is None or since <= 0:
        return 0
    if epoch and epoch != position.epoch:
        return 0
    if since > position.seq:
        return 0
    return since


def history_view(events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """``events`` without the interim results that later results replace."""
    final_seen: set[str] = set()
    partial_seen: set[str] = set()
    keep: list[StoredEvent] = []
    for event in reversed(events):
        if event.type == EventType.TRANSCRIPT:
            segment = event.data.get("segment_id")
            if segment is not None:
                if event.data.get("is_final"):
                    if segment in final_seen:
                        continue  # a later final replaced this one
                    final_seen.add(segment)
                else:
                    if segment in final_seen or segment in partial_seen:
                        continue
                    partial_seen.add(segment)
        keep.append(event)
    keep.reverse()
    return keep
