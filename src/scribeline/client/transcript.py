"""A live transcript as a caption view needs it: segments, partials replaced by finals."""

from __future__ import annotations

from dataclasses import dataclass

from scribeline.client.events import TranscriptEvent

__all__ = ["Segment", "TranscriptView"]


@dataclass(frozen=True, slots=True)
class Segment:
    """One utterance as it stands now (``is_final`` False: still being recognized)."""

    segment_id: str | None
    speaker: str | None
    text: str
    is_final: bool
    start: float | None
    end: float | None
    seq: int

    @classmethod
    def of(cls, event: TranscriptEvent) -> Segment:
        """The segment as this transcript event states it."""
        return cls(
            event.segment_id,
            event.speaker,
            event.content,
            event.is_final,
            event.segment_start,
            event.segment_end,
            event.seq,
        )


class TranscriptView:
    """The current transcript of a call, built from its transcript events.

    A result replaces the one before it with the same ``segment_id`` (a
    partial grows, a final settles it; a later partial never replaces a
    final), keeping the segment's place; a result without a ``segment_id`` is
    a segment of its own. So a caption view is::

        view = TranscriptView()
        async for event in client.live_transcript(sid):
            if isinstance(event, TranscriptEvent) and view.apply(event):
                render(view.segments)
    """

    def __init__(self) -> None:
        self._segments: list[Segment] = []
        self._index: dict[str, int] = {}

    @property
    def segments(self) -> list[Segment]:
        """Segments in the order they started."""
        return list(self._segments)

    @property
    def finals(self) -> list[Segment]:
        return [s for s in self._segments if s.is_final]

    def apply(self, event: TranscriptEvent) -> Segment | None:
        """Take a transcript event; the segment it changed (None: nothing changed)."""
        segment = Segment.of(event)
        if event.segment_id is None:
            self._segments.append(segment)
            return segment
        at = self._index.get(event.segment_id)
        if at is None:
            self._index[event.segment_id] = len(self._segments)
            self._segments.append(segment)
            return segment
        current = self._segments[at]
        if current.is_final and not event.is_final:
            return None  # a late partial never undoes a final
        self._segments[at] = segment
        return segment

    def text(self, *, finals_only: bool = False) -> str:
        """The transcript as lines of ``speaker: text``."""
        segments = self.finals if finals_only else self._segments
        return "\n".join(f"{s.speaker}: {s.text}" if s.speaker else s.text for s in segments)
