"""Placing media by timestamp: gaps become silence, repeats are dropped."""

from __future__ import annotations

import pytest

from scribeline.errors import InvalidMessage
from scribeline.speech.placement import MAX_GAP_SECONDS, Placement


def test_contiguous_frames_pass_through() -> None:
    p = Placement()
    assert p.place(0, b"a" * 160) == b"a" * 160
    assert p.place(20, b"b" * 160) == b"b" * 160
    assert p.seconds == pytest.approx(0.04)


def test_a_gap_is_filled_with_mulaw_silence() -> None:
    p = Placement()
    p.place(0, b"a" * 160)
    out = p.place(60, b"b" * 160)  # frames at 20 and 40 ms were lost
    assert out == b"\xff" * 320 + b"b" * 160
    assert p.placed == 640


def test_first_frame_late_starts_the_clock_at_zero() -> None:
    assert Placement().place(5, b"a" * 160) == b"\xff" * 40 + b"a" * 160


def test_repeated_and_overlapping_audio_is_dropped() -> None:
    p = Placement()
    p.place(0, b"a" * 160)
    assert p.place(0, b"a" * 160) == b""  # a repeat
    assert p.place(10, b"c" * 160) == b"c" * 80  # half of it was placed already
    assert p.placed == 240


def test_a_jump_far_ahead_is_refused() -> None:
    p = Placement()
    with pytest.raises(InvalidMessage, match="jumps"):
        p.place(int(MAX_GAP_SECONDS * 1000) + 20, b"a" * 160)
    assert p.placed == 0
