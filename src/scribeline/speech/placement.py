"""Placing a track's media by its timestamp, so an engine hears continuous audio.

Twilio stamps each ``media`` message with the milliseconds since the stream
started; chunks of the two tracks are numbered independently and may arrive
interleaved in any order, so the timestamp, not the arrival or the chunk
number, says where audio belongs. A gap is filled with mu-law silence (an
engine's clock is the audio it was given, and segment times come from that
clock); audio that repeats what was already placed is dropped.
"""

from __future__ import annotations

from scribeline.errors import InvalidMessage
from scribeline.speech.engine import BYTES_PER_SECOND

__all__ = ["MAX_GAP_SECONDS", "Placement"]

#: mu-law's zero amplitude.
SILENCE = b"\xff"

#: A jump ahead in one track's timestamps beyond this is refused (a stream
#: from Twilio has none: its timestamps are media time).
MAX_GAP_SECONDS = 10.0

_PER_MS = BYTES_PER_SECOND // 1000


class Placement:
    """One track's position: bytes of audio placed since the stream started."""

    __slots__ = ("placed",)

    def __init__(self) -> None:
        self.placed = 0

    def place(self, timestamp_ms: int, audio: bytes) -> bytes:
        """The bytes to feed for ``audio`` stamped ``timestamp_ms``: silence up to
        it, then what of it is new. Raises ``InvalidMessage`` for a jump ahead of
        more than ``MAX_GAP_SECONDS``."""
        at = timestamp_ms * _PER_MS
        if at > self.placed:
            gap = at - self.placed
            if gap > MAX_GAP_SECONDS * BYTES_PER_SECOND:
                raise InvalidMessage(
                    f"media.timestamp {timestamp_ms} jumps {gap / BYTES_PER_SECOND:.1f} s"
                    " past the track's audio"
                )
            out = SILENCE * gap + audio
        else:
            out = audio[self.placed - at :]
        self.placed += len(out)
        return out

    @property
    def seconds(self) -> float:
        return self.placed / BYTES_PER_SECOND
