"""Placing media by timestamp: short gaps become silence, long ones are skipped and
mapped back, repeats are dropped."""

from __future__ import annotations

import pytest

from scribeline.speech.placement import MAX_FILL_SECONDS, Placement

FRAME = 160  # 20 ms of 8 kHz mu-law


def test_contiguous_frames_pass_through() -> None:
    p = Placement()
    assert p.place(0, b"a" * FRAME) == b"a" * FRAME
    assert p.place(20, b"b" * FRAME) == b"b" * FRAME
    assert p.seconds == pytest.approx(0.04)
    assert p.media_seconds(0.03) == pytest.approx(0.03)


def test_a_short_gap_is_filled_with_mulaw_silence() -> None:
    p = Placement()
    p.place(0, b"a" * FRAME)
    out = p.place(60, b"b" * FRAME)  # frames at 20 and 40 ms were lost
    assert out == b"\xff" * 320 + b"b" * FRAME
    assert p.placed == p.fed == 640


def test_first_frame_late_starts_the_clock_at_zero() -> None:
    assert Placement().place(5, b"a" * FRAME) == b"\xff" * 40 + b"a" * FRAME


def test_repeated_and_overlapping_audio_is_dropped() -> None:
    p = Placement()
    p.place(0, b"a" * FRAME)
    assert p.place(0, b"a" * FRAME) == b""  # a repeat
    assert p.place(10, b"c" * FRAME) == b"c" * 80  # half of it was placed already
    assert p.placed == 240


def test_a_long_gap_feeds_bounded_silence_and_maps_times_back() -> None:
    """An hour on hold costs MAX_FILL_SECONDS of audio; times after it are media times."""
    p = Placement()
    p.place(0, b"a" * 8000)  # 1 s of speech
    out = p.place(3_601_000, b"b" * 8000)  # the next audio an hour later
    fill = int(MAX_FILL_SECONDS * 8000)
    assert out == b"\xff" * fill + b"b" * 8000
    assert p.seconds == pytest.approx(3602.0)  # media time
    assert p.fed == 8000 + fill + 8000  # what the engine heard
    engine_after = 1.0 + MAX_FILL_SECONDS  # where "b" starts on the engine's clock
    assert p.media_seconds(0.5) == pytest.approx(0.5)  # before the skip
    assert p.media_seconds(engine_after + 0.5) == pytest.approx(3601.5)  # after it
    assert p.media_seconds(engine_after) == pytest.approx(3601.0)
    # The silence's first half trails the old audio, its second half leads the new:
    # an utterance may start a little before its first loud byte (a VAD's pre-roll).
    assert p.media_seconds(1.2) == pytest.approx(1.2)
    assert p.media_seconds(engine_after - 0.3) == pytest.approx(3600.7)
    # A moment that ends audio right at the skip lies before it.
    middle = 1.0 + MAX_FILL_SECONDS / 2
    assert p.media_seconds(middle, end=True) == pytest.approx(middle)
    assert p.media_seconds(middle) == pytest.approx(middle + 3600 - MAX_FILL_SECONDS)


def test_several_skips_add_up() -> None:
    p = Placement()
    p.place(0, b"a" * FRAME)
    p.place(10_000, b"b" * FRAME)  # skips 10 - 0.02 - 2 s
    p.place(30_000, b"c" * FRAME)  # skips 20 - 0.02 - 2 s
    engine_c = p.fed / 8000 - 0.02  # where "c" starts on the engine's clock
    assert p.media_seconds(engine_c) == pytest.approx(30.0)
