"""``scribeline tail``: follow a call's live transcript in a terminal or a pipe.

One loop reads the client SDK's stream (it reconnects and resumes on its own)
and hands each event to one of three outputs:

- :class:`JsonOutput`: each event's wire message, one JSON object a line;
- :class:`PlainOutput` (stdout is not a terminal): finals as ``speaker: text``
  and status lines, no colour, flushed line by line;
- :class:`TerminalOutput`: the same lines in colour, with the current partials
  rewritten in place below them (``rich.live``) and a dim note on reconnects.

The SDK's warnings are tail's notes on stderr, one ``scribeline: ...`` line
each: a server it cannot reach (at the first failed attempt, while it keeps
retrying) and a ``--since`` beyond the call's last seq (the server replays the
call from the start).

Needs only the base install (the client SDK and ``rich``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from scribeline.client import (
    AlertEvent,
    AsyncClient,
    Backoff,
    ErrorEvent,
    Segment,
    StatusEvent,
    TranscriptEvent,
    TranscriptView,
)
from scribeline.client.stream import RetryNotice

__all__ = [
    "JsonOutput",
    "Output",
    "PlainOutput",
    "SpeakerColors",
    "TailOptions",
    "TerminalOutput",
    "follow",
    "run",
]

CallEvent = TranscriptEvent | StatusEvent | AlertEvent | ErrorEvent

#: Speakers get these colours in the order they first speak.
PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")

#: Give up after this many failed connection attempts in a row (about a minute
#: of an unreachable server); a connection that opens resets the count.
MAX_ATTEMPTS = 12


@dataclass(frozen=True, slots=True)
class TailOptions:
    call_sid: str
    server: str
    api_key: str | None = None
    token: str | None = None
    since: int | None = None
    finals_only: bool = False
    json: bool = False


class SpeakerColors:
    """A colour per speaker, kept for the whole tail: distinct for the first
    ``len(PALETTE)`` speakers, in the order they first speak."""

    def __init__(self) -> None:
        self._colors: dict[str, str] = {}

    def __call__(self, speaker: str) -> str:
        return self._colors.setdefault(speaker, PALETTE[len(self._colors) % len(PALETTE)])


def segment_text(segment: Segment, colors: SpeakerColors, *, partial: bool = False) -> Text:
    """``speaker: text``, the label bold in the speaker's colour; a partial dim."""
    text = Text()
    if segment.speaker:
        text.append(f"{segment.speaker}: ", style=f"bold {colors(segment.speaker)}")
    text.append(segment.text, style="dim italic" if partial else "")
    return text


def status_text(status: str) -> Text:
    return Text(f"— status: {status}", style="dim")


def alert_text(event: AlertEvent) -> Text:
    return Text(f"— alert: {event.rule_name}", style="bold red")


class Output:
    """Where events go. The base shows each status change once; the snapshot a
    stream opens with only when ``snapshot`` is set (tailing from the start,
    history holds every status from the call's first, so the snapshot would
    show the end before the beginning)."""

    def __init__(self, *, snapshot: bool = False) -> None:
        self._snapshot = snapshot
        self._status: str | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def show(self, event: CallEvent) -> None:
        if isinstance(event, TranscriptEvent):
            self.transcript(event)
        elif isinstance(event, StatusEvent):
            if event.seq is None:
                if self._snapshot:
                    self.line(status_text(event.status))
            elif event.status != self._status:
                self._status = event.status
                self.line(status_text(event.status))
        elif isinstance(event, AlertEvent):
            self.line(alert_text(event))
        else:
            self.error(event)

    def transcript(self, event: TranscriptEvent) -> None:
        raise NotImplementedError

    def line(self, text: Text) -> None:
        raise NotImplementedError

    def error(self, event: ErrorEvent) -> None:
        print(f"scribeline: the server reported {event.code}: {event.message}", file=sys.stderr)

    def reconnecting(self) -> None:
        """The stream lost its connection and is re-opening it."""


class JsonOutput(Output):
    """Every event's wire message as one JSON line (the stream already left out
    partials if asked to)."""

    def __init__(self, file: TextIO) -> None:
        super().__init__()
        self._file = file

    def show(self, event: CallEvent) -> None:
        self._file.write(orjson.dumps(event.raw).decode() + "\n")
        self._file.flush()


class PlainOutput(Output):
    """Finals and status lines without colour, for a pipe: partials are skipped,
    since a line once written cannot be replaced."""

    def __init__(self, file: TextIO, *, snapshot: bool = False) -> None:
        super().__init__(snapshot=snapshot)
        self._file = file
        self._colors = SpeakerColors()

    def transcript(self, event: TranscriptEvent) -> None:
        if event.is_final:
            self.line(segment_text(Segment.of(event), self._colors))

    def line(self, text: Text) -> None:
        self._file.write(text.plain + "\n")
        self._file.flush()


class TerminalOutput(Output):
    """Finals and status lines in colour; below them, rewritten in place, the
    partials still being recognized (one line per open segment)."""

    def __init__(self, console: Console, *, snapshot: bool = False) -> None:
        super().__init__(snapshot=snapshot)
        self._console = console
        self._colors = SpeakerColors()
        self._view = TranscriptView()
        self._partials: dict[str | None, Segment] = {}
        self._live = Live(console=console, auto_refresh=False, transient=True)

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self._partials.clear()  # a partial never settled: it goes
        self._draw_partials()
        self._live.stop()

    def transcript(self, event: TranscriptEvent) -> None:
        segment = self._view.apply(event)
        if segment is None:
            return  # a late partial of a segment already final
        if segment.is_final:
            self._partials.pop(segment.segment_id, None)
            self._draw_partials()
            self.line(segment_text(segment, self._colors))
        else:
            self._partials[segment.segment_id] = segment
            self._draw_partials()

    def line(self, text: Text) -> None:
        self._console.print(text)  # rich.live draws the partials again below it

    def reconnecting(self) -> None:
        self.line(Text("reconnecting…", style="dim"))

    def _draw_partials(self) -> None:
        partials = [segment_text(s, self._colors, partial=True) for s in self._partials.values()]
        self._live.update(Group(*partials), refresh=True)


class _StderrNotes(logging.Handler):
    """Log records as ``scribeline: <message>`` lines on stderr. ``sys.stderr`` is
    looked up for each line: rich's live display redirects it while it runs, and
    so keeps the line above the partials it draws."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"scribeline: {record.getMessage()}", file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _sdk_warnings_on_stderr() -> Iterator[None]:
    """The client SDK's warnings become tail's stderr notes (and nothing else
    prints them twice) for the duration."""
    logger = logging.getLogger("scribeline.client")
    handler = _StderrNotes(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


async def follow(options: TailOptions, output: Output) -> None:
    """Show the call's events until the stream ends (the call has ended).

    Raises the SDK's ``StreamRefused`` or ``ReconnectFailed``.
    """

    def retrying(notice: RetryNotice) -> None:
        if notice.lost:  # an open connection dropped (an unreachable server is a warning)
            output.reconnecting()

    client = AsyncClient(
        options.server,
        api_key=options.api_key,
        token=options.token,
        backoff=Backoff(max_attempts=MAX_ATTEMPTS),
        on_retry=retrying,
    )
    stream = client.live_transcript(
        options.call_sid, options.since, finals_only=options.finals_only
    )
    output.start()
    try:
        async with client, stream:
            async for event in stream:
                output.show(event)
    finally:
        output.stop()


def run(options: TailOptions) -> int:
    """Run ``follow`` with the output stdout calls for; 0 once the call has ended.

    Raises what ``follow`` raises, and ``KeyboardInterrupt`` on Ctrl-C.
    """
    output: Output
    snapshot = bool(options.since)  # resuming: say where the call stands now
    if options.json:
        output = JsonOutput(sys.stdout)
    elif sys.stdout.isatty():
        output = TerminalOutput(Console(highlight=False), snapshot=snapshot)
    else:
        output = PlainOutput(sys.stdout, snapshot=snapshot)
    with _sdk_warnings_on_stderr():
        asyncio.run(follow(options, output))
    return 0
