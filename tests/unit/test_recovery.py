"""Pure join rules: where history starts and which interim results it shows."""

from __future__ import annotations

from scribeline.events import EventType, Position, StoredEvent
from scribeline.recovery import history_view, start_after


def _t(seq: int, segment: str | None, final: bool, text: str = "x") -> StoredEvent:
    data = {"content": text, "speaker": "user", "is_final": final, "segment_id": segment}
    return StoredEvent("call:1", seq, EventType.TRANSCRIPT, 0, data)


def _status(seq: int) -> StoredEvent:
    return StoredEvent("call:1", seq, EventType.CALL_STATUS, 0, {"status": "in-progress"})


def test_start_after_defaults_to_the_beginning() -> None:
    """No since (or since 0) replays the whole stream."""
    assert start_after(None, None, Position(10, "e")) == 0
    assert start_after(0, None, Position(10, "e")) == 0


def test_start_after_honours_since_within_the_epoch() -> None:
    """A since at or below the head resumes right after it."""
    assert start_after(7, None, Position(10, "e")) == 7
    assert start_after(10, "e", Position(10, "e")) == 10


def test_start_after_replays_from_start_for_a_reset_stream() -> None:
    """A since from another epoch, or beyond the head, means storage was reset."""
    assert start_after(7, "old", Position(10, "e")) == 0
    assert start_after(11, None, Position(10, "e")) == 0


def test_history_keeps_only_the_final_of_a_finished_segment() -> None:
    """Partials replaced by their final are not replayed; order is kept."""
    events = [_status(1), _t(2, "a", False), _t(3, "a", False), _t(4, "b", False), _t(5, "a", True)]
    assert [e.seq for e in history_view(events)] == [1, 4, 5]


def test_history_keeps_the_latest_partial_of_an_unfinished_segment() -> None:
    """A segment with no final yet shows its newest partial only."""
    events = [_t(1, "a", False, "he"), _t(2, "a", False, "hello"), _t(3, None, True)]
    view = history_view(events)
    assert [e.seq for e in view] == [2, 3]
    assert view[0].data["content"] == "hello"


def test_history_keeps_transcripts_without_segment_ids() -> None:
    """Results without a segment_id are never merged with anything."""
    events = [_t(1, None, False), _t(2, None, False), _t(3, None, True)]
    assert [e.seq for e in history_view(events)] == [1, 2, 3]


def test_a_later_final_replaces_an_earlier_final() -> None:
    """A corrected final of the same segment replaces the first one."""
    events = [_t(1, "a", True, "too"), _t(2, "a", True, "two")]
    assert [e.data["content"] for e in history_view(events)] == ["two"]
