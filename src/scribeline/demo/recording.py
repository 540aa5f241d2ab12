"""The recorded phone call that the demo plays and the speech tests transcribe.

A short synthetic customer-service call in ``recordings/`` (made by
``scripts/make-demo-audio``): two tracks of raw 8 kHz mono mu-law, exactly what
Twilio Media Streams carries with ``both_tracks`` (``inbound`` is the customer,
``outbound`` the agent), plus a manifest of what is said on which track and when.
It is read with :mod:`importlib.resources`, so it works from an installed wheel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, cast

__all__ = ["FRAME_MS", "Recording", "Track", "Utterance", "load_call"]

Track = Literal["inbound", "outbound"]

#: Twilio sends one media message per 20 ms per track.
FRAME_MS = 20

_SAMPLE_RATE = 8000
_TRACKS: tuple[Track, ...] = ("inbound", "outbound")


@dataclass(frozen=True, slots=True)
class Utterance:
    """One thing said: on which track, and when (seconds from the start of the call)."""

    track: Track
    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Recording:
    """A whole call: every track's mu-law bytes (the same length), and its utterances."""

    tracks: Mapping[str, bytes]
    utterances: tuple[Utterance, ...]
    duration: float
    sample_rate: int = _SAMPLE_RATE

    def frames(self, track: str, ms: int = FRAME_MS) -> Iterator[bytes]:
        """The track cut into ``ms``-millisecond frames (the last one may be short)."""
        if ms <= 0:
            raise ValueError("ms must be positive")
        audio = self.tracks[track]
        size = self.sample_rate * ms // 1000
        for offset in range(0, len(audio), size):
            yield audio[offset : offset + size]

    def text(self, track: str | None = None) -> str:
        """What is said on ``track`` (or on every track), utterances joined in order."""
        return " ".join(u.text for u in self.utterances if track is None or u.track == track)


def load_call() -> Recording:
    """The demo call shipped in ``scribeline/demo/recordings``."""
    folder = resources.files("scribeline.demo").joinpath("recordings")
    manifest = cast(dict[str, Any], json.loads(folder.joinpath("call.json").read_text("utf-8")))
    if manifest["encoding"] != "mulaw" or manifest["sample_rate"] != _SAMPLE_RATE:
        raise ValueError("the demo recording must be 8 kHz mu-law")
    tracks: dict[str, bytes] = {
        name: folder.joinpath(str(manifest["tracks"][name]["file"])).read_bytes()
        for name in _TRACKS
    }
    utterances = tuple(
        Utterance(
            track=_track(u["track"]),
            start=float(u["start"]),
            end=float(u["end"]),
            text=str(u["text"]),
        )
        for u in manifest["utterances"]
    )
    return Recording(tracks=tracks, utterances=utterances, duration=float(manifest["duration"]))


def _track(name: object) -> Track:
    if name == "inbound":
        return "inbound"
    if name == "outbound":
        return "outbound"
    raise ValueError(f"unknown track {name!r} in the recording manifest")
