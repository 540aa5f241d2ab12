"""The local engine's endpointer and mu-law decoding, on synthetic and recorded audio.

Most tests use a loudness "VAD" (a loud frame is speech) so frame-exact timing can
be asserted; one runs the real webrtcvad over the recorded demo call.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("webrtcvad", reason="needs the speech extra")

from scribeline.demo.recording import load_call
from scribeline.speech import mulaw
from scribeline.speech.endpointer import FRAME_BYTES, Endpointer, Utterance

SILENT = bytes([mulaw.SILENCE]) * FRAME_BYTES
_t = np.arange(FRAME_BYTES) / 8000
LOUD = mulaw.encode((8000 * np.sin(2 * np.pi * 440 * _t)).astype(np.int16))


class LoudnessVad:
    """Calls a frame speech when any sample is louder than a quiet hiss."""

    def is_speech(self, pcm: bytes, rate: int) -> bool:
        assert rate == 8000 and len(pcm) == 2 * FRAME_BYTES
        return bool(np.abs(np.frombuffer(pcm, dtype=np.int16)).max() > 1000)


def endpointer(endpoint_ms: int = 500, max_utterance: float = 15.0) -> Endpointer:
    return Endpointer(2, endpoint_ms, max_utterance, vad=LoudnessVad())


def frames(*runs: tuple[bytes, int]) -> list[bytes]:
    return [frame for frame, count in runs for _ in range(count)]


def feed_frames(ep: Endpointer, audio: list[bytes]) -> list[tuple[int, Utterance]]:
    """Feed frame by frame; which frame (0-based) ended each utterance."""
    return [(n, u) for n, frame in enumerate(audio) for u in ep.feed(frame)]


def test_mulaw_table_matches_g711_and_round_trips() -> None:
    """The LUT gives G.711's known values, and encode/decode lose at most one step."""
    assert mulaw.to_int16(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]
    pcm = np.arange(-32000, 32000, 7, dtype=np.int16)
    back = mulaw.to_int16(mulaw.encode(pcm)).astype(np.int32)
    step = np.maximum(8, np.abs(pcm.astype(np.int32)) // 16)  # mu-law's relative precision
    assert np.all(np.abs(back - pcm) <= step)
    assert mulaw.to_float32(bytes([0x80])).tolist() == pytest.approx([32124 / 32768])


def test_speech_starts_at_three_voiced_of_five_with_pre_roll_and_ends_after_silence() -> None:
    """Onset at the 3rd voiced frame, 300 ms pre-roll, end after 500 ms of silence + 200 ms tail."""
    ep = endpointer()
    audio = frames((SILENT, 50), (LOUD, 40), (SILENT, 40))
    ended = feed_frames(ep, audio)
    assert len(ended) == 1
    at, utt = ended[0]
    assert at == 90 + 24  # the 25th silent frame (500 ms) closes it, not before
    assert utt.start == pytest.approx(0.76)  # detected at frame 52 -> frames 38..52 pre-roll
    assert utt.end == pytest.approx(1.8 + 0.2)
    assert utt.voiced == pytest.approx(0.8)
    assert utt.cut == "silence"
    assert len(utt.pcm) == round((utt.end - utt.start) * 8000)
    assert not ep.in_speech and ep.flush() is None


def test_two_voiced_frames_in_five_never_start_speech() -> None:
    """Clicks (2 loud frames in every 5) are not speech."""
    ep = endpointer()
    audio = frames((LOUD, 2), (SILENT, 3)) * 40
    assert feed_frames(ep, audio) == []
    assert not ep.in_speech and ep.flush() is None


def test_a_pause_shorter_than_the_endpoint_keeps_one_utterance() -> None:
    """400 ms of silence inside speech does not split it at a 500 ms endpoint."""
    ep = endpointer()
    audio = frames((SILENT, 20), (LOUD, 30), (SILENT, 20), (LOUD, 30), (SILENT, 30))
    ended = feed_frames(ep, audio)
    assert [u.cut for _, u in ended] == ["silence"]
    assert ended[0][1].voiced == pytest.approx(1.2)


def test_feeds_of_any_size_give_the_same_utterances() -> None:
    """Bytes are framed across feeds: ragged chunk sizes change nothing."""
    stream = b"".join(frames((SILENT, 30), (LOUD, 60), (SILENT, 30), (LOUD, 45), (SILENT, 40)))
    whole = endpointer().feed(stream)
    assert len(whole) == 2
    for size in (1, 7, 159, 161, 1000):
        ep = endpointer()
        got = [u for i in range(0, len(stream), size) for u in ep.feed(stream[i : i + size])]
        assert [(u.start, u.end, u.voiced) for u in got] == [
            (u.start, u.end, u.voiced) for u in whole
        ]
        assert all(np.array_equal(a.pcm, b.pcm) for a, b in zip(got, whole, strict=True))
    assert endpointer().feed(stream[:100]) == []


def test_long_speech_is_cut_at_the_limit_and_goes_on_without_a_gap() -> None:
    """At max_utterance a final is cut; the next utterance starts at the very next frame."""
    ep = endpointer(max_utterance=1.0)
    audio = frames((SILENT, 10), (LOUD, 110), (SILENT, 30))
    ended = [u for _, u in feed_frames(ep, audio)]
    assert [u.cut for u in ended] == ["max", "max", "silence"]
    assert [round(u.end - u.start, 2) for u in ended[:2]] == [1.0, 1.0]
    assert ended[0].end == pytest.approx(ended[1].start)
    assert ended[1].end == pytest.approx(ended[2].start)
    assert ended[2].end == pytest.approx((10 + 110) * 0.02 + 0.2)


def test_flush_cuts_the_open_utterance_where_the_audio_ends() -> None:
    """The end of the track closes an utterance mid-speech; its end is the bytes fed."""
    ep = endpointer()
    assert feed_frames(ep, frames((SILENT, 10), (LOUD, 30))) == []
    assert ep.in_speech and ep.open_seconds > 0.5
    snap = ep.snapshot()
    assert snap is not None and snap.end == pytest.approx(0.8)
    ep.feed(LOUD[:100])  # a partial frame at the very end is dropped
    utt = ep.flush()
    assert utt is not None and utt.cut == "flush"
    assert utt.end == pytest.approx(0.8) and utt.voiced == pytest.approx(0.6)
    assert not ep.in_speech and ep.flush() is None


def test_webrtcvad_finds_the_recorded_utterances() -> None:
    """Mode 2 over the demo call: one utterance per line said, each covering its line.

    webrtcvad may fire on a few frames of line noise while it adapts (the start of a
    track); the engine does not decode anything under 0.3 s of voiced audio, nor here.
    """
    call = load_call()
    for track in ("inbound", "outbound"):
        ep = Endpointer(2, 500, 15.0)
        got = [u for frame in call.frames(track) for u in ep.feed(frame)]
        last = ep.flush()
        got += [last] if last else []
        got = [u for u in got if u.voiced >= 0.3]
        said = [u for u in call.utterances if u.track == track]
        assert len(got) == len(said), track
        for heard, line in zip(got, said, strict=True):
            assert heard.start <= line.start and heard.start >= line.start - 0.5
            assert line.end - 0.3 <= heard.end <= line.end + 0.5
        assert all(u.cut == "silence" for u in got[:-1])  # the last may run to the end
