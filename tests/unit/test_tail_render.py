"""How ``scribeline tail`` renders events: plain lines, JSON lines, the terminal view."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

from scribeline.client.events import parse_call_message
from scribeline.tail import (
    PALETTE,
    CallEvent,
    JsonOutput,
    PlainOutput,
    SpeakerColors,
    TerminalOutput,
)

SID = "CA" + "0" * 32


def said(seq: int, content: str, speaker: str | None = "user", **data: Any) -> CallEvent:
    event = parse_call_message(
        {
            "type": "transcript",
            "call_sid": SID,
            "seq": seq,
            "timestamp": "2026-01-19T12:00:05.123Z",
            "data": {"content": content, "speaker": speaker, **data},
        }
    )
    assert event is not None
    return event


def status(seq: int | None, value: str) -> CallEvent:
    message: dict[str, Any] = {"type": "call_status", "call_sid": SID, "status": value}
    if seq is not None:
        message["seq"] = seq
    event = parse_call_message(message)
    assert event is not None
    return event


CALL = [
    status(None, "completed"),
    status(1, "in-progress"),
    said(2, "Hel", is_final=False, segment_id="a"),
    said(3, "Hello [bold]there[/bold]", segment_id="a"),
    status(4, "in-progress"),
    said(5, "Sure", speaker="assistant", is_final=False, segment_id="b"),
    said(6, "No speaker here.", speaker=None),
    status(7, "completed"),
]


def test_speaker_colours_are_stable_and_distinct() -> None:
    """A speaker keeps its colour, and the first speakers all get different ones."""
    colors = SpeakerColors()
    names = [f"speaker {i}" for i in range(len(PALETTE))]
    assigned = [colors(name) for name in names]
    assert len(set(assigned)) == len(PALETTE)
    assert [colors(name) for name in reversed(names)] == assigned[::-1]


def test_plain_output_prints_finals_and_status_changes() -> None:
    """Piped output is finals with their speaker and each status change once, without the
    opening snapshot, partials or markup interpretation."""
    out = io.StringIO()
    plain = PlainOutput(out)
    for event in CALL:
        plain.show(event)
    assert out.getvalue().splitlines() == [
        "— status: in-progress",
        "user: Hello [bold]there[/bold]",
        "No speaker here.",
        "— status: completed",
    ]


def test_plain_output_shows_the_snapshot_when_resuming() -> None:
    """Resuming (--since), the snapshot says where the call stands before what follows."""
    out = io.StringIO()
    plain = PlainOutput(out, snapshot=True)
    for event in CALL[:2]:
        plain.show(event)
    assert out.getvalue().splitlines() == ["— status: completed", "— status: in-progress"]


def test_json_output_is_each_wire_message() -> None:
    """JSON output writes every event's raw message, one per line."""
    out = io.StringIO()
    output = JsonOutput(out)
    for event in CALL:
        output.show(event)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [e.raw for e in CALL]


def test_terminal_output_colours_finals_and_drops_late_partials() -> None:
    """On a terminal the speaker label is coloured, partials are drawn, and a partial that
    arrives after its segment's final is not drawn again."""
    file = io.StringIO()
    console = Console(file=file, force_terminal=True, color_system="standard", width=80)
    output = TerminalOutput(console)
    output.start()
    output.show(said(2, "Hel", is_final=False, segment_id="a"))
    assert "Hel" in file.getvalue()
    output.show(said(3, "Hello there", segment_id="a"))
    mark = len(file.getvalue())
    output.show(said(4, "Hello th", is_final=False, segment_id="a"))
    output.stop()
    assert "Hello th" not in file.getvalue()[mark:]
    assert "\x1b[1;36muser: \x1b[0mHello there" in file.getvalue()
