"""The speech-engine interface: 8 kHz mu-law audio in, transcript segments out.

One :class:`SpeechTrack` transcribes one audio track (one speaker). Its
caller feeds it continuous audio in order, gaps already filled with silence;
the track calls ``on_segment`` with what it hears, one segment at a time and
in order:

* an utterance is numbered from 1 on its track (``Segment.index``);
* any number of partials (``is_final`` False) may come before the
  utterance's final, each replacing the one before;
* exactly one final ends each utterance, and nothing about that utterance
  comes after it;
* ``start``/``end`` are seconds of audio from the track's first byte.

Every engine passes the same contract suite (``tests/speech/``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = [
    "BYTES_PER_SECOND",
    "OnSegment",
    "Segment",
    "SpeechBusy",
    "SpeechEngine",
    "SpeechError",
    "SpeechFailed",
    "SpeechTrack",
    "SpeechUnavailable",
    "SpeechUnreachable",
]

#: 8 kHz mono mu-law: one byte per sample (Twilio's media payload).
BYTES_PER_SECOND = 8000


@dataclass(frozen=True, slots=True)
class Segment:
    """What an engine heard of one utterance, so far (partial) or for good (final)."""

    index: int
    text: str
    is_final: bool
    start: float
    end: float
    confidence: float | None = None


#: Receives a track's segments; awaited, so a slow receiver slows the track down.
OnSegment = Callable[[Segment], Awaitable[None]]


class SpeechError(Exception):
    """A speech engine could not do what was asked; ``str()`` is safe to show."""


class SpeechBusy(SpeechError):
    """The engine is at its admission limit: no track was opened."""


class SpeechUnavailable(SpeechError):
    """The engine cannot run here (a missing extra, a missing or refused key): no
    track was opened, and trying again will not help until something is changed."""


class SpeechUnreachable(SpeechError):
    """The engine cannot be reached now (a remote engine's network, its server
    errors): no track was opened; a later try may work."""


class SpeechFailed(SpeechError):
    """A track's engine failed after it was opened (a remote engine went away)."""


class SpeechTrack(ABC):
    """One track being transcribed. Not thread-safe: use it from the event loop."""

    @abstractmethod
    def feed(self, mulaw: bytes) -> None:
        """The next bytes of the track's audio (8 kHz mu-law), right after the last.

        Never blocks. Raises :class:`SpeechFailed` once the engine has failed.
        """

    async def ready(self) -> None:  # noqa: B027 - engines without a buffer are always ready
        """Returns once the track can take more audio without its buffer growing
        past what it holds for a real-time source: a producer faster than real time
        (a replay, a test) awaits it between feeds and is slowed to the engine's pace."""

    @abstractmethod
    async def finish(self) -> None:
        """The audio has ended: the open utterance (if any) gets its final, and this
        returns once every segment has been handed to ``on_segment``. Raises
        :class:`SpeechFailed` if the engine failed; the track is closed either way."""

    @abstractmethod
    async def abort(self) -> None:
        """Stop at once: nothing more is delivered, everything is released."""


class SpeechEngine(ABC):
    """Opens tracks. One engine object serves many tracks at once."""

    #: The engine's name in settings, logs and on the wire ("local", "deepgram").
    name: str

    @abstractmethod
    async def open_track(self, on_segment: OnSegment, label: str) -> SpeechTrack:
        """A new track whose segments go to ``on_segment``; ``label`` names it in logs
        (never a secret). Raises :class:`SpeechBusy`, :class:`SpeechUnreachable` or
        :class:`SpeechUnavailable`."""

    async def close(self) -> None:  # noqa: B027 - optional hook; most engines hold nothing
        """Release what the engine holds (models, workers); its tracks are gone by then."""
