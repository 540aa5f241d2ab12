"""Cuts a track's audio into utterances: a pure, synchronous state machine.

Mu-law bytes go in; each complete 20 ms frame (160 samples at 8 kHz) is
decoded and classified by webrtcvad. Speech starts when 3 of the last 5
frames are voiced, and the utterance then begins 300 ms earlier (pre-roll),
so the first syllable is not clipped. It ends after ``endpoint_ms`` of
non-speech (keeping up to 200 ms of that silence as a tail) or when it
reaches ``max_utterance`` seconds, in which case the next utterance starts
with the next frame. Times are seconds of track audio, counted from the bytes
fed, never from a clock. Bytes short of a whole frame wait for the next feed;
the last partial frame of a track is dropped (under 20 ms).

The numbers come from the speech research; docs/audio.md ("Local") documents them.
"""

from __future__ import annotations

import importlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from scribeline.speech.mulaw import to_int16

__all__ = ["FRAME_BYTES", "FRAME_SECONDS", "Endpointer", "Utterance"]

#: One 20 ms frame of 8 kHz mu-law (one Twilio media message).
FRAME_BYTES = 160
FRAME_SECONDS = 0.02
_PRE_ROLL_FRAMES = 15  # 300 ms
_START_WINDOW = 5
_START_VOICED = 3
_TAIL_FRAMES = 10  # 200 ms of the closing silence stays with the utterance


@dataclass(frozen=True, slots=True)
class Utterance:
    """One utterance's audio (8 kHz, 16-bit) and where it lies in the track."""

    start: float
    end: float
    pcm: NDArray[np.int16]
    #: Seconds of frames the VAD called speech (the rest is pre-roll, pauses, tail).
    voiced: float
    #: Why it ended: the closing silence, the length limit, or the end of the track.
    cut: Literal["silence", "max", "flush"]


class Endpointer:
    """Utterances out of a stream of 8 kHz mu-law bytes (see the module docstring)."""

    def __init__(
        self, vad_mode: int, endpoint_ms: int, max_utterance: float, vad: Any = None
    ) -> None:
        #: ``vad`` is anything with webrtcvad's ``is_speech(pcm, rate)``; tests may pass one.
        self._vad = vad if vad is not None else importlib.import_module("webrtcvad").Vad(vad_mode)
        self._end_frames = max(1, round(endpoint_ms / 1000 / FRAME_SECONDS))
        self._max_frames = max(1, round(max_utterance / FRAME_SECONDS))
        self._rest = b""
        self._frames = 0  # whole frames processed since the track began
        self._recent: deque[tuple[bytes, bool]] = deque(maxlen=_PRE_ROLL_FRAMES)
        self._in_speech = False
        self._buf: list[bytes] = []  # the open utterance's frames (16-bit PCM bytes)
        self._first = 0  # frame number of the open utterance's first frame
        self._voiced = 0
        self._silence = 0  # non-speech frames in a row at the end of the utterance

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is open."""
        return self._in_speech

    @property
    def position(self) -> float:
        """Seconds of track audio classified so far."""
        return self._frames * FRAME_SECONDS

    @property
    def open_seconds(self) -> float:
        """Length of the open utterance so far (0 when none is open)."""
        return len(self._buf) * FRAME_SECONDS if self._in_speech else 0.0

    @property
    def open_voiced(self) -> float:
        """Voiced seconds of the open utterance so far."""
        return self._voiced * FRAME_SECONDS if self._in_speech else 0.0

    def snapshot(self) -> Utterance | None:
        """The open utterance as it stands (for a partial), or None."""
        if not self._in_speech or not self._buf:
            return None
        return self._utterance(len(self._buf), "flush")

    def feed(self, mulaw: bytes) -> list[Utterance]:
        """Classify the next bytes; the utterances that ended within them, in order."""
        data = self._rest + mulaw if self._rest else mulaw
        whole = len(data) - len(data) % FRAME_BYTES
        self._rest = data[whole:]
        if not whole:
            return []
        pcm = to_int16(data[:whole]).tobytes()
        done: list[Utterance] = []
        step = FRAME_BYTES * 2
        for offset in range(0, len(pcm), step):
            ended = self._frame(pcm[offset : offset + step])
            if ended is not None:
                done.append(ended)
        return done

    def flush(self) -> Utterance | None:
        """The track has ended: the open utterance, if it holds any speech."""
        if not self._in_speech:
            return None
        return self._close(len(self._buf) - max(0, self._silence - _TAIL_FRAMES), "flush")

    def _frame(self, frame: bytes) -> Utterance | None:
        voiced = bool(self._vad.is_speech(frame, 8000))
        self._frames += 1
        if not self._in_speech:
            self._recent.append((frame, voiced))
            window = list(self._recent)[-_START_WINDOW:]
            if sum(v for _, v in window) >= _START_VOICED:
                self._start()
            return None
        self._buf.append(frame)
        if voiced:
            self._voiced += 1
            self._silence = 0
        else:
            self._silence += 1
        if self._silence >= self._end_frames:
            keep = len(self._buf) - self._silence + min(self._silence, _TAIL_FRAMES)
            return self._close(keep, "silence")
        if len(self._buf) >= self._max_frames:
            return self._close(len(self._buf), "max")
        return None

    def _start(self) -> None:
        frames = list(self._recent)
        self._recent.clear()
        self._in_speech = True
        self._buf = [f for f, _ in frames]
        self._first = self._frames - len(frames)
        self._voiced = sum(v for _, v in frames)
        self._silence = 0
        for _, v in reversed(frames):
            if v:
                break
            self._silence += 1

    def _close(self, keep: int, cut: Literal["silence", "max", "flush"]) -> Utterance | None:
        """End the open utterance with its first ``keep`` frames; None if none was voiced."""
        utterance = self._utterance(keep, cut) if self._voiced and keep > 0 else None
        rest = self._buf[keep:]
        if cut == "max":
            # Still talking: the next utterance starts right here, without a new onset.
            self._buf = []
            self._first = self._frames
            self._voiced = 0
        else:
            self._in_speech = False
            self._buf = []
            # The unused closing silence is the next utterance's pre-roll.
            self._recent.extend((f, False) for f in rest[-_PRE_ROLL_FRAMES:])
        return utterance

    def _utterance(self, frames: int, cut: Literal["silence", "max", "flush"]) -> Utterance:
        start = self._first * FRAME_SECONDS
        pcm = np.frombuffer(b"".join(self._buf[:frames]), dtype=np.int16)
        return Utterance(
            start=start,
            end=start + frames * FRAME_SECONDS,
            pcm=pcm,
            voiced=min(self._voiced, frames) * FRAME_SECONDS,
            cut=cut,
        )
