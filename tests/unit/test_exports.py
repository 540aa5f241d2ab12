"""Transcript exports (``scribeline.exports``) read back by independent parsers:
webvtt-py for WebVTT, ``srt`` for SRT, orjson for JSON."""

from __future__ import annotations

import html
import io
from typing import Any

import orjson
import srt
import webvtt

from scribeline.events import EventType, StoredEvent
from scribeline.exports import Exporter, Format, timestamp

STARTED = 1_700_000_000_000


def _final(seq: int, content: str, speaker: str = "user", ts: int = 0, **more: Any) -> StoredEvent:
    data = {"content": content, "speaker": speaker, "is_final": True, **more}
    return StoredEvent("call:1", seq, EventType.TRANSCRIPT, STARTED + ts, data, False, "e")


def _export(fmt: Format, *pages: list[StoredEvent]) -> str:
    exporter = Exporter(fmt, "CA1", STARTED)
    out = exporter.head() + b"".join(exporter.feed(page) for page in pages) + exporter.finish()
    return out.decode()


TRICKY = [
    _final(1, "a --> b", segment_start=1.0, segment_end=2.5),
    _final(2, "<b>bold</b> & <i>co</i>", "assistant", segment_start=3.0, segment_end=4.0),
    _final(3, "first line\n\n\nafter blank lines\n", segment_start=4.0, segment_end=5.0),
    _final(4, "ünïcödé 日本語 🎉", segment_start=5.0, segment_end=6.0),
    _final(5, "12\n00:00:01,000 --> 00:00:09,000\nnot a cue", segment_start=6.0, segment_end=7),
]


def test_timestamps_have_milliseconds_and_hours_past_99() -> None:
    """Rounded to the millisecond, never negative; SRT uses a comma."""
    assert timestamp(65.4321) == "00:01:05.432"
    assert timestamp(3600 * 123 + 1.0016, ",") == "123:00:01,002"
    assert timestamp(-3) == "00:00:00.000"


def test_vtt_reads_back_with_speakers_text_and_timings() -> None:
    """Each final is a cue with its speaker as the voice; escaped text (``-->``,
    tags, ``&``) reads back as written; blank lines are gone, not a cue break."""
    vtt = webvtt.from_buffer(io.StringIO(_export("vtt", TRICKY[:2], TRICKY[2:])))
    cues = list(vtt)
    assert [c.voice for c in cues] == ["user", "assistant", "user", "user", "user"]
    assert [html.unescape(c.text) for c in cues] == [
        "a --> b",
        "<b>bold</b> & <i>co</i>",
        "first line\nafter blank lines",
        "ünïcödé 日本語 🎉",
        "12\n00:00:01,000 --> 00:00:09,000\nnot a cue",
    ]
    assert [(c.start, c.end) for c in cues][:2] == [
        ("00:00:01.000", "00:00:02.500"),
        ("00:00:03.000", "00:00:04.000"),
    ]


def test_srt_reads_back_with_speakers_text_and_timings() -> None:
    """SRT cues carry ``speaker: text``; a ``-->`` in the text cannot pose as a
    timing line, and blank lines do not split a cue."""
    subs = list(srt.parse(_export("srt", TRICKY)))
    assert [s.index for s in subs] == [1, 2, 3, 4, 5]
    assert [s.content for s in subs] == [
        "user: a -> b",
        "assistant: <b>bold</b> & <i>co</i>",
        "user: first line\nafter blank lines",
        "user: ünïcödé 日本語 🎉",
        "user: 12\n00:00:01,000 -> 00:00:09,000\nnot a cue",
    ]
    assert (subs[0].start.total_seconds(), subs[0].end.total_seconds()) == (1.0, 2.5)


def test_missing_timings_fall_back_to_event_times() -> None:
    """Without segment times a final starts when it was stored (from the call's
    start) and ends when the next starts, or 2 s later for the last one or when
    the next starts earlier; an end before the start is not used."""
    events = [
        _final(1, "one", ts=1_000),
        _final(2, "two", ts=4_000, segment_end=3.0),  # ends before it starts
        _final(3, "three", ts=3_500),  # starts before the previous one
        _final(4, "four", ts=10_000, segment_start=9.0),
    ]
    subs = list(srt.parse(_export("srt", events)))
    times = [(s.start.total_seconds(), s.end.total_seconds()) for s in subs]
    assert times == [(1.0, 4.0), (4.0, 6.0), (3.5, 9.0), (9.0, 11.0)]


def test_finals_without_text_are_left_out_of_subtitles_only() -> None:
    """A cue needs text (a blank one would end the cue early); JSON keeps it."""
    events = [_final(1, "  \n "), _final(2, "kept", ts=1000)]
    assert [c.text for c in webvtt.from_buffer(io.StringIO(_export("vtt", events)))] == ["kept"]
    assert [s.index for s in srt.parse(_export("srt", events))] == [1]
    assert len(orjson.loads(_export("json", events))["segments"]) == 2


def test_json_and_text_keep_every_final_in_order() -> None:
    """JSON is one document however many pages fed it; text is one line per final."""
    body = orjson.loads(_export("json", TRICKY[:1], [], TRICKY[1:]))
    assert body["call_sid"] == "CA1"
    assert [s["seq"] for s in body["segments"]] == [1, 2, 3, 4, 5]
    assert body["segments"][2]["text"] == "first line\n\n\nafter blank lines\n"
    assert body["segments"][0] | {"created_at": None} == {
        "seq": 1,
        "segment_id": None,
        "speaker": "user",
        "text": "a --> b",
        "start": 1.0,
        "end": 2.5,
        "confidence": None,
        "created_at": None,
    }
    lines = _export("txt", TRICKY).splitlines()
    assert lines[0] == "[00:00:01] user: a --> b"
    assert lines[2] == "[00:00:04] user: first line after blank lines"
    assert len(lines) == 5


def test_an_empty_call_exports_empty_documents() -> None:
    """No finals: a valid empty file of each format."""
    assert list(webvtt.from_buffer(io.StringIO(_export("vtt")))) == []
    assert list(srt.parse(_export("srt"))) == []
    assert orjson.loads(_export("json")) == {"call_sid": "CA1", "segments": []}
    assert _export("txt") == ""


def test_text_clock_keeps_hours_past_99_whole() -> None:
    """``[HHH:MM:SS]`` past 99 hours, not a clock cut to eight characters."""
    line = _export("txt", [_final(1, "late", segment_start=3600 * 100 + 61.5)])
    assert line == "[100:01:01] user: late\n"


def test_a_voice_cannot_carry_markup_or_a_line_break() -> None:
    """A speaker name is escaped and kept on one line, so a ``>`` or a blank line
    in it can neither close the voice span early nor end the cue."""
    vtt = _export("vtt", [_final(1, "hi", "a>b &\n\nc", segment_start=1.0, segment_end=2.0)])
    assert "<v a&gt;b &amp; c>hi" in vtt
    cues = list(webvtt.from_buffer(io.StringIO(vtt)))
    assert [html.unescape(c.text) for c in cues] == ["hi"]
