"""Pure rules for what a joining subscriber is sent (DESIGN.md, "Joining a stream").

* Where history starts, given the client's ``since`` and ``epoch``.
* Which history events are shown: of each transcript segment, only the final
  (or, with no final yet, the latest partial); interim results that a later
  result of the same segment replaces are skipped.

The second rule needs to know what comes later in the stream. So that a long
history can be sent in bounded pages, :class:`HistoryFilter` is built from a
compact index of the range, ``(seq, segment_id, is_final)`` per transcript
that has a segment (``EventLog.transcript_segments``), and then judges one
event at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scribeline.events import EventType, Position, StoredEvent

__all__ = ["HistoryFilter", "SegmentEntry", "history_view", "segment_entry", "start_after"]

#: One transcript of a history range: (seq, segment_id, is_final).
SegmentEntry = tuple[int, str, bool]


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


def segment_entry(event: StoredEvent) -> SegmentEntry | None:
    """The event's index entry, or None when no other event can replace it."""
    if event.type != EventType.TRANSCRIPT:
        return None
    segment = event.data.get("segment_id")
    if not isinstance(segment, str):
        return None
    return event.seq, segment, bool(event.data.get("is_final"))


class HistoryFilter:
    """Decides, event by event, what a replay of a history range shows.

    A final is shown if no later final of its segment exists in the range; a
    partial if no later result of its segment does (a partial that arrives
    after its segment's final is shown too: live, clients saw it the same
    way). Everything that is not a transcript with a segment is shown.
    """

    __slots__ = ("_keep",)

    def __init__(self, entries: Iterable[SegmentEntry]) -> None:
        last_final: dict[str, int] = {}
        last_partial: dict[str, int] = {}
        for seq, segment, is_final in entries:
            (last_final if is_final else last_partial)[segment] = seq
        keep = set(last_final.values())
        for segment, seq in last_partial.items():
            if seq > last_final.get(segment, 0):
                keep.add(seq)
        self._keep = keep

    @classmethod
    def of(cls, events: Iterable[StoredEvent]) -> HistoryFilter:
        """The filter for a range held in memory."""
        return cls(e for e in map(segment_entry, events) if e is not None)

    def shows(self, event: StoredEvent) -> bool:
        return segment_entry(event) is None or event.seq in self._keep


def history_view(events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """``events`` without the interim results that later results replace."""
    keep = HistoryFilter.of(events)
    return [e for e in events if keep.shows(e)]
