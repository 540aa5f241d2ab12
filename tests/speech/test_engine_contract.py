"""The speech-engine contract (``speech/engine.py``), run against every engine.

The local engine runs for real (faster-whisper tiny.en from the packaged model);
Deepgram runs against a local fake that speaks its wire format, scripted with the
recording's words at their times. Each engine gets the recorded call's customer
track, 20 ms at a time like a media stream, as fast as the engine takes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from scribeline.config import Settings
from scribeline.demo.recording import Recording, load_call
from scribeline.speech.deepgram import DeepgramEngine
from scribeline.speech.engine import Segment, SpeechEngine, SpeechTrack
from scribeline.speech.local import LocalEngine

from .deepgram_fake import Utterance, running_fake
from .wer import word_error_rate

CALL: Recording = load_call()
TRACK = "inbound"
#: What tiny.en meets with margin on this recording (espeak through a phone path).
MAX_WER = 0.35


@pytest.fixture(params=["local", "deepgram"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[SpeechEngine]:
    settings = Settings(speech_workers=2, deepgram_url="ws://unused", close_timeout=2.0)
    async with AsyncExitStack() as stack:
        if request.param == "local":
            local = LocalEngine(settings)
            stack.push_async_callback(local.close)
            await local.load()
            yield local
        else:
            # Tracks open inbound (TRACK) first, then outbound (the independence test).
            scripts = [
                [Utterance(u.start, u.end, u.text) for u in CALL.utterances if u.track == track]
                for track in ("inbound", "outbound")
            ]
            fake = await stack.enter_async_context(running_fake(scripts=scripts, key="k"))
            yield DeepgramEngine("k", settings.model_copy(update={"deepgram_url": fake.url}))


class Heard:
    """What a track delivered, checked against the contract as it arrives."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.closed: set[int] = set()

    async def __call__(self, segment: Segment) -> None:
        assert segment.index not in self.closed, f"{segment} after its utterance's final"
        assert all(segment.index >= i for i in self.closed), "utterances out of order"
        assert 0.0 <= segment.start <= segment.end <= CALL.duration + 0.5, segment
        assert segment.confidence is None or 0.0 <= segment.confidence <= 1.0
        if segment.is_final:
            self.closed.add(segment.index)
        self.segments.append(segment)

    @property
    def finals(self) -> list[Segment]:
        return [s for s in self.segments if s.is_final]


async def feed(track: SpeechTrack, until: float | None = None) -> None:
    limit = int(until * 8000) if until is not None else None
    sent = 0
    for frame in CALL.frames(TRACK):
        if limit is not None and sent >= limit:
            return
        track.feed(frame)
        sent += len(frame)
        await track.ready()


async def test_finals_carry_the_words_said_in_order(engine: SpeechEngine) -> None:
    heard = Heard()
    track = await engine.open_track(heard, "contract/inbound")
    await feed(track)
    await track.finish()
    finals = heard.finals
    assert [f.index for f in finals] == sorted({f.index for f in finals}), finals
    text = " ".join(f.text for f in finals)
    assert word_error_rate(CALL.text(TRACK), text) <= MAX_WER, text
    starts = [f.start for f in finals]
    assert starts == sorted(starts)
    spoken = [u for u in CALL.utterances if u.track == TRACK]
    for final in finals:  # each final lies on something that was said
        assert any(u.start - 1 <= final.start and final.end <= u.end + 1 for u in spoken), final


async def test_finish_turns_an_utterance_cut_mid_word_into_a_final(engine: SpeechEngine) -> None:
    heard = Heard()
    track = await engine.open_track(heard, "contract/cut")
    cut = 7.0  # inside "Hi, I ordered hiking boots last week ..."
    await feed(track, until=cut)
    await track.finish()
    assert heard.finals, "nothing was delivered for the utterance in progress"
    last = heard.finals[-1]
    assert 4.0 <= last.start < cut and last.end <= cut + 0.1
    assert last.text.strip()


async def test_abort_delivers_nothing_more(engine: SpeechEngine) -> None:
    """A segment being delivered when abort() comes is never completed, and nothing
    queued behind it arrives: finish() after abort() returns at once, empty."""
    entered = asyncio.Event()
    gate = asyncio.Event()
    delivered: list[Segment] = []

    async def held(segment: Segment) -> None:
        entered.set()
        await gate.wait()  # the receiver is busy when abort() comes
        delivered.append(segment)

    track = await engine.open_track(held, "contract/abort")
    for i, frame in enumerate(CALL.frames(TRACK)):  # past two utterances' ends
        if i * 0.02 >= 15.0:
            break
        track.feed(frame)
        if entered.is_set():
            break
        await asyncio.sleep(0)  # let the engine's tasks run between frames
    await asyncio.wait_for(entered.wait(), 30)
    await track.abort()
    gate.set()
    await track.finish()
    assert delivered == []


async def test_tracks_are_independent(engine: SpeechEngine) -> None:
    """Two tracks fed at once, interleaved: each hears only its own audio."""
    heard = {"inbound": Heard(), "outbound": Heard()}
    tracks = {name: await engine.open_track(h, f"contract/{name}") for name, h in heard.items()}
    frames = {name: list(CALL.frames(name)) for name in tracks}
    for pair in zip(frames["inbound"], frames["outbound"], strict=True):
        for name, frame in zip(tracks, pair, strict=True):
            tracks[name].feed(frame)
            await tracks[name].ready()
    for track in tracks.values():
        await track.finish()
    for name, h in heard.items():
        text = " ".join(f.text for f in h.finals)
        assert word_error_rate(CALL.text(name), text) <= MAX_WER, (name, text)
