"""Placing a track's media by its timestamp, so an engine hears continuous audio.

Twilio stamps each ``media`` message with the milliseconds since the stream
started; chunks of the two tracks are numbered independently and may arrive
interleaved in any order, so the timestamp, not the arrival or the chunk
number, says where audio belongs. Audio that repeats what was already placed
is dropped. A gap (a track that went quiet: the outbound track while nothing
is played to the caller, a call on hold) is filled with mu-law silence, but
only up to ``MAX_FILL_SECONDS``, enough for any engine to end the utterance
before it: the rest of a long gap is skipped, so an hour on hold costs
nothing. An engine's clock is the audio it was given; :meth:`media_seconds`
turns a time on that clock back into the stream's media time.
"""

from __future__ import annotations

import bisect

from scribeline.speech.engine import BYTES_PER_SECOND

__all__ = ["MAX_FILL_SECONDS", "Placement"]

#: mu-law's zero amplitude.
SILENCE = b"\xff"

#: Silence fed for a gap, at most (seconds): longer than any endpointing
#: silence (the local engine's 0.5 s, Deepgram's utterance end of 1 s).
MAX_FILL_SECONDS = 2.0

_PER_MS = BYTES_PER_SECOND // 1000
_MAX_FILL = int(MAX_FILL_SECONDS * BYTES_PER_SECOND)


class Placement:
    """One track's position in media time, and the engine's position in the audio fed."""

    __slots__ = ("_at", "_skipped", "fed", "placed")

    def __init__(self) -> None:
        #: Bytes of media time covered (what the stream's timestamps say).
        self.placed = 0
        #: Bytes handed to the engine (its clock).
        self.fed = 0
        # Where skips happened: engine position (bytes) -> media bytes skipped up to there.
        self._at: list[int] = []
        self._skipped: list[int] = []

    def place(self, timestamp_ms: int, audio: bytes) -> bytes:
        """The bytes to feed for ``audio`` stamped ``timestamp_ms``: silence for a
        gap before it (at most ``MAX_FILL_SECONDS``), then what of it is new."""
        at = timestamp_ms * _PER_MS
        if at > self.placed:
            gap = at - self.placed
            fill = min(gap, _MAX_FILL)
            if gap > fill:
                # The skip sits mid-silence: its first half is the old audio's tail,
                # its second half the lead-in of the new (an utterance starting
                # right after the gap may begin a little before its first byte).
                self._at.append(self.fed + fill // 2)
                self._skipped.append((self._skipped[-1] if self._skipped else 0) + gap - fill)
            out = SILENCE * fill + audio
            self.placed = at + len(audio)
        else:
            out = audio[self.placed - at :]
            self.placed += len(out)
        self.fed += len(out)
        return out

    def media_seconds(self, engine_seconds: float, *, end: bool = False) -> float:
        """The media time of a moment ``engine_seconds`` into the audio fed (``end``:
        a moment that ends audio, so one right at a skip lies before it)."""
        position = engine_seconds * BYTES_PER_SECOND
        i = (bisect.bisect_left if end else bisect.bisect_right)(self._at, position)
        skipped = self._skipped[i - 1] if i else 0
        return (position + skipped) / BYTES_PER_SECOND

    @property
    def seconds(self) -> float:
        """Media time covered, in seconds."""
        return self.placed / BYTES_PER_SECOND
