"""A call's final transcript as a file: plain text, JSON, WebVTT or SRT.

Pure rendering over stored final transcripts, fed in pages (the handler
streams a long call page by page): ``Exporter.head``, then ``feed`` per
page, then ``finish``, each returning bytes to write.

Timings, in seconds from the start of the call's audio: a final's
``segment_start`` and ``segment_end`` when it has them; else its start is
when it was stored, from the call's start (``(ts - started_at) / 1000``), and
its end the next final's start (or 2 s after its own start when there is
none, or when the next one starts earlier). So a cue is held back until the
next one is seen, one at a time.

Escaping: WebVTT cue text escapes ``&``, ``<`` and ``>`` (so ``-->`` and
tags are text, never markup or timings); SRT has no escapes, so its text
goes as it is but for ``-->``, written ``->``. In both, a cue's text keeps
its line breaks without blank lines (a blank line ends a cue), and a final
without any text is left out. Plain text puts one final on one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from scribeline.events import StoredEvent, format_ms

__all__ = ["CONTENT_TYPES", "FORMATS", "Cue", "Exporter", "Format", "timestamp"]

Format = Literal["txt", "json", "vtt", "srt"]
FORMATS: tuple[Format, ...] = ("txt", "json", "vtt", "srt")
CONTENT_TYPES: dict[str, str] = {
    "txt": "text/plain; charset=utf-8",
    "json": "application/json",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
}
#: Seconds a cue lasts when nothing says when it ends.
DEFAULT_DURATION = 2.0


@dataclass(frozen=True, slots=True)
class Cue:
    """One final transcript with its timing (seconds from the call's start)."""

    seq: int
    speaker: str
    text: str
    start: float
    end: float
    segment_id: str | None
    confidence: float | None
    created_at: int


def timestamp(seconds: float, separator: str = ".") -> str:
    """``HH:MM:SS.mmm`` (``separator`` ``,`` for SRT); hours grow past 99."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _lines(text: str) -> list[str]:
    """The text's non-blank lines, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Exporter:
    """Renders one call's finals in one format, page by page."""

    def __init__(self, fmt: Format, call_sid: str, started_at: int) -> None:
        self._format = fmt
        self._call_sid = call_sid
        self._started_at = started_at
        self._pending: tuple[StoredEvent, float, float | None] | None = None
        self._count = 0

    def head(self) -> bytes:
        if self._format == "vtt":
            return b"WEBVTT\n\n"
        if self._format == "json":
            return b'{"call_sid":' + orjson.dumps(self._call_sid) + b',"segments":['
        return b""

    def feed(self, events: Iterable[StoredEvent]) -> bytes:
        """The rendering of the cues these finals (next in seq order) complete."""
        out: list[bytes] = []
        for event in events:
            start = _number(event.data.get("segment_start"))
            if start is None:
                start = max(0.0, (event.ts - self._started_at) / 1000)
            end = _number(event.data.get("segment_end"))
            if self._pending is not None:
                out.append(self._render(self._close(start)))
            self._pending = (event, start, end if end is not None and end > start else None)
        return b"".join(out)

    def finish(self) -> bytes:
        """The last cue and whatever closes the file."""
        last = b"" if self._pending is None else self._render(self._close(None))
        self._pending = None
        return last + (b"]}" if self._format == "json" else b"")

    def _close(self, next_start: float | None) -> Cue:
        assert self._pending is not None
        event, start, end = self._pending
        if end is None:
            fits = next_start is not None and next_start > start
            end = next_start if fits and next_start is not None else start + DEFAULT_DURATION
        data = event.data
        return Cue(
            event.seq,
            str(data.get("speaker", "")),
            str(data.get("content", "")),
            start,
            end,
            data.get("segment_id"),
            _number(data.get("confidence")),
            event.ts,
        )

    def _render(self, cue: Cue) -> bytes:
        if self._format == "json":
            self._count += 1
            body = {
                "seq": cue.seq,
                "segment_id": cue.segment_id,
                "speaker": cue.speaker,
                "text": cue.text,
                "start": round(cue.start, 3),
                "end": round(cue.end, 3),
                "confidence": cue.confidence,
                "created_at": format_ms(cue.created_at),
            }
            return (b"," if self._count > 1 else b"") + orjson.dumps(body)
        if self._format == "txt":
            text = " ".join(_lines(cue.text))
            clock = timestamp(cue.start).rsplit(".", 1)[0]  # HH:MM:SS, hours past 99 whole
            return f"[{clock}] {cue.speaker}: {text}\n".encode()
        lines = _lines(cue.text)
        if not lines:
            return b""
        self._count += 1
        if self._format == "vtt":
            times = f"{timestamp(cue.start)} --> {timestamp(cue.end)}"
            text = _vtt_escape("\n".join(lines))
            voice = _vtt_escape(" ".join(cue.speaker.split()))  # one line, no markup
            return f"{self._count}\n{times}\n<v {voice}>{text}\n\n".encode()
        times = f"{timestamp(cue.start, ',')} --> {timestamp(cue.end, ',')}"
        text = "\n".join(lines).replace("-->", "->")
        return f"{self._count}\n{times}\n{cue.speaker}: {text}\n\n".encode()
