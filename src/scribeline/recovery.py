"""Pure rules for what a joining subscriber is sent (DESIGN.md, "Joining a stream").

* Where history starts, given the client's ``since`` and ``epoch``.
* Which history events are shown: of each transcript segment, only the final
  (or, with no final yet, the latest partial); interim results that a later
  result of the same segment replaces are skipped.

The second rule needs to know what comes later in the stream. So that a long
history can be sent in bounded pages, :class:`HistoryFilter` judges a page
from the heads of the page's segments (their latest final and partial seq,
which storage keeps as a projection: ``EventLog.segment_heads``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from scribeline.events import EventType, Position, StoredEvent

__all__ = [
    "HistoryFilter",
    "SegmentEntry",
    "SegmentHead",
    "history_view",
    "segment_entry",
    "segment_heads_of",
    "start_after",
]

#: One transcript that has a segment: (seq, segment_id, is_final).
SegmentEntry = tuple[int, str, bool]

#: A segment's latest final and latest partial seq (None: none yet).
SegmentHead = tuple[int | None, int | None]


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


def segment_heads_of(events: Iterable[StoredEvent]) -> dict[str, SegmentHead]:
    """The heads of the segments of ``events`` (in seq order), as storage keeps them."""
    heads: dict[str, SegmentHead] = {}
    for seq, segment, is_final in filter(None, map(segment_entry, events)):
        last_final, last_partial = heads.get(segment, (None, None))
        heads[segment] = (seq, last_partial) if is_final else (last_final, seq)
    return heads


class HistoryFilter:
    """Decides, event by event, what a replay shows, from its segments' heads.

    A final is shown if it is its segment's latest final; a partial if it is
    its segment's latest result (a partial that arrives after its segment's
    final is shown too: live, clients saw it the same way). Everything that
    is not a transcript with a segment is shown. A head beyond the replayed
    range (a result appended after the join) hides what it replaces: that
    result reaches the subscriber live.
    """

    __slots__ = ("_keep",)

    def __init__(self, heads: Mapping[str, SegmentHead]) -> None:
        keep: set[int] = set()
        for last_final, last_partial in heads.values():
            if last_final is not None:
                keep.add(last_final)
            if last_partial is not None and last_partial > (last_final or 0):
                keep.add(last_partial)
        self._keep = keep

    @classmethod
    def of(cls, events: Iterable[StoredEvent]) -> HistoryFilter:
        """The filter for a range held in memory (its own heads)."""
        return cls(segment_heads_of(events))

    def shows(self, event: StoredEvent) -> bool:
        return segment_entry(event) is None or event.seq in self._keep


def history_view(events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """``events`` without the interim results that later results replace."""
    keep = HistoryFilter.of(events)
    return [e for e in events if keep.shows(e)]
