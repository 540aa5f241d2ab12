"""The Deepgram engine against a fake Deepgram speaking the real v1 wire format on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from scribeline.config import Settings
from scribeline.speech.deepgram import FRAME_BYTES, DeepgramEngine, Utterances
from scribeline.speech.engine import (
    BYTES_PER_SECOND,
    Segment,
    SpeechFailed,
    SpeechTrack,
    SpeechUnavailable,
    SpeechUnreachable,
)
from tests.speech.deepgram_fake import DeepgramFake, FakeConnection, Utterance, running_fake

SILENCE = b"\xff" * 160  # 20 ms of mu-law silence, as Twilio sends it
KEY = "dg-secret-0123456789abcdef"


class Collector:
    """An ``on_segment`` that keeps what it gets and lets a test await a condition on it."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self._changed = asyncio.Event()

    async def __call__(self, segment: Segment) -> None:
        self.segments.append(segment)
        self._changed.set()

    @property
    def finals(self) -> list[Segment]:
        return [s for s in self.segments if s.is_final]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def check_contract(segments: list[Segment]) -> None:
    """Indices count from 1; an utterance's partials come before its one final, nothing after."""
    expected = 1
    for segment in segments:
        assert segment.index == expected, segments
        assert segment.start <= segment.end
        if segment.is_final:
            expected += 1


def engine_for(fake: DeepgramFake, key: str = KEY, **options: Any) -> DeepgramEngine:
    settings = Settings(deepgram_url=fake.url, close_timeout=2.0)
    return DeepgramEngine(key, settings, **options)


def feed_seconds(track: SpeechTrack, seconds: float) -> None:
    for _ in range(round(seconds * BYTES_PER_SECOND / len(SILENCE))):
        track.feed(SILENCE)


async def until_feed_fails(track: SpeechTrack) -> SpeechFailed:
    """Feeds silence until the track reports its failure (awaits the receiver noticing)."""
    async with asyncio.timeout(5):
        while True:
            try:
                track.feed(SILENCE)
            except SpeechFailed as exc:
                return exc
            await asyncio.sleep(0.01)


def final_chunks(conn: FakeConnection) -> list[dict[str, Any]]:
    return [
        m
        for m in conn.sent
        if m["type"] == "Results"
        and m["is_final"]
        and m["channel"]["alternatives"][0]["transcript"]
    ]


async def test_partials_then_one_final_with_the_same_index() -> None:
    """Interim results become partials of utterance 1, speech_final its final, with word times."""
    script = [Utterance(0.5, 2.0, "Hello there, general Kenobi.")]
    async with running_fake(script=script, key=KEY) as fake:
        got = Collector()
        track = await engine_for(fake).open_track(got, "call-1:in")
        feed_seconds(track, 3.0)
        await got.wait_until(lambda: bool(got.finals))  # speech_final: before the stream ends
        await track.finish()

    check_contract(got.segments)
    partials = [s for s in got.segments if not s.is_final]
    assert partials and all(s.index == 1 for s in partials)
    assert all("Hello there, general Kenobi.".startswith(s.text) for s in partials)
    assert len({s.text for s in partials}) > 1  # the text grows
    [final] = got.finals
    assert (final.index, final.text) == (1, "Hello there, general Kenobi.")
    assert final.start == pytest.approx(0.5) and final.end == pytest.approx(2.0)
    assert final.confidence == pytest.approx(0.9)


async def test_split_is_final_chunks_are_accumulated() -> None:
    """Two is_final chunks (speech_final on the second) make one final, confidence weighted."""
    script = [
        Utterance(0.5, 2.5, "one two three four", split=True, confidences=(0.9, 0.5)),
        Utterance(3.0, 4.0, "five six"),
    ]
    async with running_fake(script=script, key=KEY) as fake:
        got = Collector()
        track = await engine_for(fake).open_track(got, "call-1:in")
        feed_seconds(track, 4.5)
        await got.wait_until(lambda: len(got.finals) == 2)
        await track.finish()
        [conn] = await _connections(fake)

    check_contract(got.segments)
    chunks = final_chunks(conn)
    assert [c["speech_final"] for c in chunks] == [False, True, True]  # the scenario happened
    first, second = chunks[0], chunks[1]
    weighted = (first["duration"] * 0.9 + second["duration"] * 0.5) / (
        first["duration"] + second["duration"]
    )
    assert [(s.index, s.text) for s in got.finals] == [(1, "one two three four"), (2, "five six")]
    assert got.finals[0].confidence == pytest.approx(weighted)
    assert got.finals[0].start == pytest.approx(0.5) and got.finals[0].end == pytest.approx(2.5)
    # The second utterance's partial shows only its own words.
    assert all(s.text in ("five", "five six") for s in got.segments if s.index == 2)


async def test_utterance_end_is_the_safety_net_without_speech_final() -> None:
    """An utterance whose speech_final never comes is ended by UtteranceEnd, mid-stream."""
    script = [Utterance(0.5, 1.5, "are you there", speech_final=False)]
    async with running_fake(script=script, key=KEY) as fake:
        got = Collector()
        track = await engine_for(fake).open_track(got, "call-1:out")
        feed_seconds(track, 3.0)  # UtteranceEnd is due at 1.5 + 1.0 s (utterance_end_ms)
        await got.wait_until(lambda: bool(got.finals))
        [conn] = await _connections(fake)
        assert any(m["type"] == "UtteranceEnd" for m in conn.sent)
        assert not any(m.get("speech_final") for m in conn.sent)
        await track.finish()

    check_contract(got.segments)
    assert [(s.index, s.text) for s in got.finals] == [(1, "are you there")]


async def test_finish_sends_close_stream_and_waits_for_the_last_results() -> None:
    """finish() sends CloseStream and returns only after Deepgram's last results and close."""
    script = [Utterance(0.5, 4.0, "this sentence is cut off by the hangup")]
    async with running_fake(script=script, key=KEY, close_delay=0.2) as fake:
        got = Collector()
        track = await engine_for(fake).open_track(got, "call-1:in")
        feed_seconds(track, 2.0)
        await track.finish()
        [conn] = await _connections(fake)
        assert conn.close_stream
        assert conn.sent[-1]["type"] == "Metadata"
        assert conn.closed_with == (1000, "")
        assert conn.bytes_received == 2 * BYTES_PER_SECOND

    check_contract(got.segments)
    assert [(s.index, s.text) for s in got.finals] == [(1, "this sentence is")]
    assert got.segments[-1].is_final


async def test_keepalive_keeps_a_quiet_track_open_past_the_idle_timeout() -> None:
    """With no audio, KeepAlive every 0.1 s keeps Deepgram from closing at its 0.5 s idle limit."""
    async with running_fake(key=KEY, idle_timeout=0.5) as fake:
        got = Collector()
        track = await engine_for(fake, keepalive_interval=0.1).open_track(got, "call-1:out")
        feed_seconds(track, 0.1)
        await fake.wait_until(lambda: fake.keepalives >= 8)  # 0.8 s of quiet
        [conn] = await _connections(fake)
        assert not conn.closed.is_set()
        feed_seconds(track, 0.1)
        await track.finish()
        assert conn.closed_with == (1000, "")


async def test_without_keepalive_deepgram_closes_net_0001_and_the_track_fails() -> None:
    """The control: a quiet track past the idle limit fails in feed() and finish()."""
    async with running_fake(key=KEY, idle_timeout=0.3) as fake:
        got = Collector()
        track = await engine_for(fake, keepalive_interval=30).open_track(got, "call-1:out")
        feed_seconds(track, 0.1)
        [conn] = await _connections(fake)
        await asyncio.wait_for(conn.closed.wait(), 5)
        assert conn.closed_with == (1011, "NET-0001")
        error = await until_feed_fails(track)
        assert "NET-0001" in str(error)
        with pytest.raises(SpeechFailed, match="NET-0001"):
            await track.finish()


async def test_a_bad_key_is_unavailable_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    """401 at the handshake: SpeechUnavailable at open_track; the key is in no log, even DEBUG."""
    caplog.set_level(logging.DEBUG)
    async with running_fake(key="the-right-key") as fake:
        with pytest.raises(SpeechUnavailable, match="Deepgram refused the API key") as raised:
            await engine_for(fake, key=KEY).open_track(Collector(), "call-1:in")
        assert fake.refused == 1 and not fake.connections
    assert KEY not in str(raised.value)
    assert KEY not in caplog.text
    assert "call-1:in" in caplog.text


async def test_the_key_is_not_logged_on_a_good_track(caplog: pytest.LogCaptureFixture) -> None:
    """A whole track at DEBUG level logs its label and request id, never the key."""
    caplog.set_level(logging.DEBUG)
    async with running_fake(script=[Utterance(0.2, 0.6, "hi")], key=KEY) as fake:
        track = await engine_for(fake).open_track(Collector(), "call-1:in")
        feed_seconds(track, 1.0)
        await track.finish()
        [conn] = await _connections(fake)
    assert KEY not in caplog.text
    assert conn.request_id in caplog.text


async def test_other_refusals_and_unreachable_hosts_are_unavailable() -> None:
    """HTTP 400 is SpeechUnavailable (retrying will not help); a server error, a closed
    port and a slow handshake are SpeechUnreachable (a later try may work)."""
    async with running_fake(key=KEY, refuse_status=400) as fake:
        with pytest.raises(SpeechUnavailable, match="HTTP 400"):
            await engine_for(fake).open_track(Collector(), "call-1:in")
    async with running_fake(key=KEY, refuse_status=503) as fake:
        with pytest.raises(SpeechUnreachable, match="HTTP 503"):
            await engine_for(fake).open_track(Collector(), "call-1:in")
        url = fake.url
    # The fake has stopped: nothing listens on its port any more.
    engine = DeepgramEngine(KEY, Settings(deepgram_url=url))
    with pytest.raises(SpeechUnreachable, match="cannot connect"):
        await engine.open_track(Collector(), "call-1:in")
    async with running_fake(key=KEY, handshake_delay=1.0) as fake:
        with pytest.raises(SpeechUnreachable, match="timed out"):
            await engine_for(fake, open_timeout=0.2).open_track(Collector(), "call-1:in")
    with pytest.raises(SpeechUnavailable, match="no Deepgram API key"):
        await DeepgramEngine("", Settings()).open_track(Collector(), "call-1:in")


@pytest.mark.parametrize(
    ("drop_close", "reason"),
    [(None, "dropped"), ((1011, "NET-0000"), "NET-0000"), ((1000, "DATA-0000"), "DATA-0000")],
)
async def test_a_mid_stream_drop_fails_feed_and_finish(
    drop_close: tuple[int, str] | None, reason: str
) -> None:
    """A dropped connection, or a close whose reason is a Deepgram error code, fails the track;
    the text Deepgram had already finalized is still delivered by finish()."""
    script = [Utterance(0.2, 0.8, "one two three", speech_final=False)]
    async with running_fake(script=script, key=KEY, drop_after=1.0, drop_close=drop_close) as fake:
        got = Collector()
        track = await engine_for(fake).open_track(got, "call-1:in")
        feed_seconds(track, 1.0)
        error = await until_feed_fails(track)
        assert reason in str(error)
        with pytest.raises(SpeechFailed, match=reason):
            await track.finish()
        assert not any(conn.close_stream for conn in fake.connections)
    check_contract(got.segments)
    assert [(s.index, s.text) for s in got.finals] == [(1, "one two three")]


async def test_the_query_asks_for_phone_audio_and_interim_results() -> None:
    """The URL asks for the model, 8 kHz mono mu-law, interim results and the endpointing."""
    async with running_fake(key=KEY) as fake:
        settings = Settings(
            deepgram_url=fake.url,
            deepgram_model="nova-3",
            deepgram_language="en-GB",
            deepgram_endpointing_ms=400,
            deepgram_utterance_end_ms=1500,
        )
        track = await DeepgramEngine(KEY, settings).open_track(Collector(), "call-1:in")
        await track.finish()
        [query] = fake.queries
    assert query == {
        "model": "nova-3",
        "language": "en-GB",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "400",
        "utterance_end_ms": "1500",
        "smart_format": "true",
        "punctuate": "true",
        "vad_events": "true",
    }


async def test_audio_goes_out_in_bounded_non_empty_frames() -> None:
    """Empty feeds send nothing; small chunks are coalesced and big ones split, all bytes kept."""
    async with running_fake(key=KEY) as fake:
        track = await engine_for(fake, keepalive_interval=0.05).open_track(Collector(), "c:in")
        track.feed(b"")
        for _ in range(20):
            track.feed(SILENCE)
            track.feed(b"")
        track.feed(b"\xff" * 5000)
        [conn] = await _connections(fake)
        # Only an empty feed on an empty queue: the sender wakes, then idles into a KeepAlive.
        await fake.wait_until(lambda: conn.bytes_received == 20 * len(SILENCE) + 5000)
        track.feed(b"")
        await fake.wait_until(lambda: conn.keepalives >= 1 or conn.closed.is_set())
        await track.finish()
    assert conn.empty_frames == 0
    assert conn.closed_with == (1000, "")
    assert conn.bytes_received == 20 * len(SILENCE) + 5000
    assert all(0 < size <= FRAME_BYTES for size in conn.frame_sizes)
    assert len(conn.frame_sizes) < 20 + 5000 // FRAME_BYTES + 2  # coalesced, not one per feed


async def _connections(fake: DeepgramFake) -> list[FakeConnection]:
    await fake.wait_until(lambda: bool(fake.connections))
    return fake.connections


async def test_audio_beyond_the_queue_bound_fails_the_track() -> None:
    """More than 10 s of unsent audio fails the track instead of growing the queue."""
    async with running_fake(key=KEY) as fake:
        track = await engine_for(fake).open_track(Collector(), "call-1:in")
        with pytest.raises(SpeechFailed, match="fell behind"):
            feed_seconds(track, 11.0)  # no await in between: nothing can be sent
        with pytest.raises(SpeechFailed):
            track.feed(SILENCE)
        with pytest.raises(SpeechFailed, match="fell behind"):
            await track.finish()


async def test_abort_delivers_nothing_more() -> None:
    """After abort() no segment arrives and the socket is closed."""
    script = [Utterance(0.2, 1.0, "never heard")]
    async with running_fake(script=script, key=KEY) as fake:
        got = Collector()
        track = await engine_for(fake).open_track(got, "call-1:in")
        feed_seconds(track, 2.0)
        await track.abort()
        [conn] = await _connections(fake)
        await asyncio.wait_for(conn.closed.wait(), 5)
    assert got.segments == []
    assert not conn.close_stream


def test_an_interim_revised_to_nothing_gets_an_empty_final() -> None:
    """A partial whose utterance turns out empty is closed by an empty final, not left open."""
    utterances = Utterances()

    def results(text: str, *, is_final: bool, speech_final: bool = False) -> list[Segment]:
        alternative = {"transcript": text, "confidence": 0.8, "words": []}
        message = {
            "type": "Results",
            "start": 1.0,
            "duration": 0.5,
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {"alternatives": [alternative]},
        }
        return utterances.results(message)

    assert results("", is_final=False) == []
    assert results("um", is_final=False) == [Segment(1, "um", False, 1.0, 1.5)]
    assert results("", is_final=True, speech_final=True) == [Segment(1, "", True, 1.0, 1.5)]
    assert utterances.utterance_end() == []  # nothing open: no final
    assert results("yes", is_final=True) == []
    assert utterances.flush() == [Segment(2, "yes", True, 1.0, 1.5, 0.8)]
