"""Unit tests for the demo call simulator (scribeline.demo), all on virtual time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from scribeline.demo.dialogues import DIALOGUES, Dialogue, Turn
from scribeline.demo.simulator import (
    new_call_sid,
    play_call,
    random_phone_number,
    ring_out,
    run_simulation,
)
from scribeline.events import TERMINAL_STATUSES

PUNCTUATION = ",.;:!?"


# --- Fakes ------------------------------------------------------------------------------------


class VirtualClock:
    """Virtual time: ``sleep`` parks the caller until ``run_until`` advances past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def run_until(self, done: Callable[[], bool], *, limit: float = 100_000.0) -> None:
        """Wake sleepers in deadline order until ``done()`` holds; never sleeps for real."""
        while True:
            for _ in range(3):  # let the woken task run up to its next sleep
                await asyncio.sleep(0)
            if done():
                return
            assert self._sleepers, "nothing left to wake: the simulation stalled"
            deadline, _, future = heapq.heappop(self._sleepers)
            assert deadline < limit, "virtual time limit reached"
            self.now = max(self.now, deadline)
            if not future.done():
                future.set_result(None)


@dataclass
class Transcript:
    call_sid: str
    content: str
    speaker: str
    is_final: bool
    confidence: float | None
    segment_start: float
    segment_end: float
    segment_id: str


@dataclass
class CallRecord:
    call_sid: str
    to_phone_number: str
    customer_phone_number: str
    call_type: str
    created_at: float
    #: The status the call was created in.
    initial_status: str
    transcripts: list[Transcript] = field(default_factory=list)
    #: Every later status change, stamped with virtual time.
    statuses: list[tuple[float, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.statuses[-1][1] if self.statuses else self.initial_status

    @property
    def ended_at(self) -> float | None:
        return next((at for at, s in self.statuses if s in TERMINAL_STATUSES), None)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def endings(self) -> list[str]:
        return [s for _, s in self.statuses if s in TERMINAL_STATUSES]

    def finals(self) -> list[Transcript]:
        return [t for t in self.transcripts if t.is_final]

    def segments(self) -> dict[str, list[Transcript]]:
        grouped: dict[str, list[Transcript]] = {}
        for transcript in self.transcripts:
            grouped.setdefault(transcript.segment_id, []).append(transcript)
        return grouped


class RecordingSink:
    """Records every call the simulator makes, stamped with virtual time."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock
        self.calls: dict[str, CallRecord] = {}
        self.log: list[tuple[str, str]] = []  # (method, call_sid) in order

    def _now(self) -> float:
        return self.clock.now if self.clock is not None else 0.0

    async def create_call(
        self,
        call_sid: str,
        *,
        status: str,
        to_phone_number: str,
        customer_phone_number: str,
        call_type: str,
    ) -> None:
        assert call_sid not in self.calls, "call created twice"
        self.log.append(("create_call", call_sid))
        self.calls[call_sid] = CallRecord(
            call_sid, to_phone_number, customer_phone_number, call_type, self._now(), status
        )

    async def append_transcript(
        self,
        call_sid: str,
        *,
        content: str,
        speaker: str,
        is_final: bool,
        confidence: float | None,
        segment_start: float,
        segment_end: float,
        segment_id: str,
    ) -> int:
        call = self.calls[call_sid]
        assert call.status == "in-progress", f"transcript while the call is {call.status}"
        self.log.append(("append_transcript", call_sid))
        call.transcripts.append(
            Transcript(
                call_sid,
                content,
                speaker,
                is_final,
                confidence,
                segment_start,
                segment_end,
                segment_id,
            )
        )
        return len(call.transcripts)

    async def set_status(self, call_sid: str, status: str) -> None:
        call = self.calls[call_sid]
        assert not call.ended, f"status {status!r} after the call ended"
        self.log.append(("set_status", call_sid))
        call.statuses.append((self._now(), status))

    def ordinary(self, pinned: str | None = None) -> list[CallRecord]:
        return [call for sid, call in self.calls.items() if sid != pinned]


async def instant_sleep(seconds: float) -> None:
    assert seconds >= 0
    await asyncio.sleep(0)


async def record_one_call(dialogue: Dialogue, seed: int, speed: float = 1.0) -> CallRecord:
    sink = RecordingSink()
    await play_call(
        sink, "CAtest", dialogue, rng=random.Random(seed), speed=speed, sleep=instant_sleep
    )
    return sink.calls["CAtest"]


def words_of(text: str) -> list[str]:
    return text.split()


# --- Dialogues and helpers --------------------------------------------------------------------


def test_dialogues_are_well_formed() -> None:
    """Every script has 8-16 turns, opens with the agent and alternates speakers."""
    assert len(DIALOGUES) >= 6
    assert len({d.title for d in DIALOGUES}) == len(DIALOGUES)
    for dialogue in DIALOGUES:
        assert 8 <= len(dialogue.turns) <= 16, dialogue.title
        assert dialogue.turns[0].speaker == "assistant", dialogue.title
        for before, after in itertools.pairwise(dialogue.turns):
            assert before.speaker != after.speaker, dialogue.title
        assert all(turn.text.strip() for turn in dialogue.turns)
        assert dialogue.call_type in {"inbound", "outbound"}


def test_call_sids_and_phone_numbers_look_like_twilio_and_are_fictional() -> None:
    """SIDs are CA plus 32 lowercase hex digits; numbers are E.164 in the 555-01xx range."""
    rng = random.Random(1)
    sids = {new_call_sid(rng) for _ in range(200)}
    assert len(sids) == 200
    assert all(re.fullmatch(r"CA[0-9a-f]{32}", sid) for sid in sids)
    assert all(re.fullmatch(r"\+1\d{3}55501\d{2}", random_phone_number(rng)) for _ in range(200))


# --- One call ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_each_segment_has_growing_interims_then_exactly_one_final(seed: int) -> None:
    """Within a segment, interims are growing prefixes of the final, which comes once and last."""
    slips = 0
    for dialogue in DIALOGUES:
        call = await record_one_call(dialogue, seed)
        segments = call.segments()
        assert list(segments) == [f"seg_{n}" for n in range(1, len(dialogue.turns) + 1)]
        for results, turn in zip(segments.values(), dialogue.turns, strict=True):
            *interims, final = results
            assert final.is_final and not any(r.is_final for r in interims)
            assert final.content == turn.text
            assert final.confidence is not None and 0.85 <= final.confidence <= 0.98
            final_words = words_of(final.content)
            if len(final_words) >= 2:
                assert interims, "a multi-word turn gets at least one interim"
            sizes = [len(words_of(r.content)) for r in interims]
            assert sizes == sorted(set(sizes)) and all(s < len(final_words) for s in sizes)
            for interim in interims:
                assert interim.confidence is None or interim.confidence < final.confidence
                *head, last = words_of(interim.content)
                assert head == final_words[: len(head)]
                expected = final_words[len(head)].rstrip(PUNCTUATION)
                slips += last != expected
    assert slips > 0, "recognition slips should happen occasionally"


async def test_segment_times_increase_and_follow_speaking_pace() -> None:
    """Segment times are 2-decimal, increasing, paced at 2.5-3.2 words/s with 0.4-1.5 s gaps."""
    for seed, dialogue in enumerate(DIALOGUES):
        call = await record_one_call(dialogue, seed)
        previous_end = 0.0
        for results in call.segments().values():
            final = results[-1]
            start = final.segment_start
            assert start > previous_end
            assert all(r.segment_start == start for r in results)
            ends = [r.segment_end for r in results]
            assert ends == sorted(ends) and ends[0] > start
            for value in (start, *ends):
                assert value == round(value, 2)
            duration = final.segment_end - start
            n_words = len(words_of(final.content))
            assert n_words / 3.2 - 0.02 <= duration <= n_words / 2.5 + 0.02
            if previous_end:
                assert 0.4 - 0.02 <= start - previous_end <= 1.5 + 0.02
            previous_end = final.segment_end


async def test_speed_scales_the_timeline() -> None:
    """speed=2 plays the same call in half the time, timestamps and sleeping alike."""
    slept: dict[float, float] = {}
    for speed in (1.0, 2.0):
        sink = RecordingSink()
        total = 0.0

        async def sleep(seconds: float) -> None:
            nonlocal total
            total += seconds

        await play_call(
            sink, "CAtest", DIALOGUES[2], rng=random.Random(9), speed=speed, sleep=sleep
        )
        slept[speed] = total
        transcripts = sink.calls["CAtest"].transcripts
        assert total >= transcripts[-1].segment_end
        if speed == 1.0:
            slow = transcripts
    assert slept[2.0] == pytest.approx(slept[1.0] / 2)
    for fast_result, slow_result in zip(transcripts, slow, strict=True):
        assert fast_result.segment_end == pytest.approx(slow_result.segment_end / 2, abs=0.011)


async def test_speakers_follow_the_dialogue_and_the_call_completes() -> None:
    """Final results carry the turns' speakers in order; the call is created first, then ended."""
    dialogue = DIALOGUES[0]
    sink = RecordingSink()
    await play_call(sink, "CAtest", dialogue, rng=random.Random(4), sleep=instant_sleep)
    call = sink.calls["CAtest"]
    assert [f.speaker for f in call.finals()] == [t.speaker for t in dialogue.turns]
    for results in call.segments().values():
        assert len({r.speaker for r in results}) == 1
    assert call.initial_status == "ringing"
    assert [status for _, status in call.statuses] == ["in-progress", "completed"]
    assert sink.log[0][0] == "create_call" and sink.log[-1][0] == "set_status"
    assert call.call_type == dialogue.call_type
    assert call.to_phone_number != call.customer_phone_number


async def test_a_call_rings_then_is_answered_before_anyone_speaks() -> None:
    """A call is created ringing, becomes in-progress a few seconds later and only then
    speaks; the ring time scales with speed."""
    for speed in (1.0, 2.0):
        clock = VirtualClock()
        sink = RecordingSink(clock)
        task = asyncio.create_task(
            play_call(
                sink, "CAtest", DIALOGUES[0], rng=random.Random(3), speed=speed, sleep=clock.sleep
            )
        )
        await clock.run_until(task.done)
        await task
        record = sink.calls["CAtest"]
        assert record.initial_status == "ringing"
        (answered_at, answered), (_, ended) = record.statuses
        assert (answered, ended) == ("in-progress", "completed")
        assert 2.0 / speed <= answered_at - record.created_at <= 5.0 / speed
        first_words = record.transcripts[0].segment_start
        assert first_words >= answered_at - record.created_at, "nobody speaks while it rings"


async def test_a_ring_out_stays_ringing_until_no_answer() -> None:
    """ring_out creates a ringing call that never becomes in-progress nor speaks and ends
    no-answer after ringing for a while (scaled by speed)."""
    clock = VirtualClock()
    sink = RecordingSink(clock)
    task = asyncio.create_task(
        ring_out(
            sink,
            "CAring",
            rng=random.Random(2),
            speed=2.0,
            sleep=clock.sleep,
            customer_phone_number="+14155550100",
        )
    )
    await clock.run_until(task.done)
    await task
    record = sink.calls["CAring"]
    assert (record.initial_status, record.statuses[0][1]) == ("ringing", "no-answer")
    assert len(record.statuses) == 1 and record.transcripts == []
    assert 8.0 / 2 <= record.statuses[0][0] <= 16.0 / 2
    assert record.customer_phone_number == "+14155550100" and record.call_type == "outbound"


# --- The simulation ---------------------------------------------------------------------------


async def test_simulation_keeps_n_calls_going_and_replaces_finished_ones() -> None:
    """With N slots, never more than N calls are live, N are live at once, and new calls follow."""
    clock = VirtualClock()
    sink = RecordingSink(clock)
    stop = asyncio.Event()
    simulation = asyncio.create_task(
        run_simulation(sink, concurrent_calls=3, rng=random.Random(5), sleep=clock.sleep, stop=stop)
    )
    await clock.run_until(lambda: sum(c.ended for c in sink.calls.values()) >= 9)
    stop.set()
    await simulation

    calls = list(sink.calls.values())
    assert len(calls) >= 10
    starts = sorted(call.created_at for call in calls)
    assert starts[0] < starts[1] < starts[2], "the first calls are staggered"
    events = sorted(
        [(call.created_at, 1) for call in calls]
        + [(call.ended_at, -1) for call in calls if call.ended_at is not None]
    )
    live, peak = 0, 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    assert peak == 3
    for call in calls:
        assert len(call.endings()) == 1, "every call, finished or cut off, ends exactly once"
        assert call.initial_status == "ringing"
        answered = [s for _, s in call.statuses] == ["in-progress", "completed"]
        assert answered or [s for _, s in call.statuses] == ["canceled"], call.statuses
        assert call.call_type in {"inbound", "outbound"}
        assert re.fullmatch(r"CA[0-9a-f]{32}", call.call_sid)
    assert len({call.call_sid for call in calls}) == len(calls)


async def test_pinned_call_runs_until_stop_then_completes() -> None:
    """The pinned call plays dialogue after dialogue and only ends when stop is set."""
    clock = VirtualClock()
    sink = RecordingSink(clock)
    stop = asyncio.Event()
    pinned = "CA" + "0" * 32
    longest = max(len(d.turns) for d in DIALOGUES)
    simulation = asyncio.create_task(
        run_simulation(
            sink,
            concurrent_calls=1,
            pinned_call_sid=pinned,
            speed=4.0,
            rng=random.Random(6),
            sleep=clock.sleep,
            stop=stop,
        )
    )

    def enough() -> bool:
        done = [c for c in sink.ordinary(pinned) if c.ended]
        return pinned in sink.calls and len(done) >= 4 and clock.now > 300

    await clock.run_until(enough)
    call = sink.calls[pinned]
    assert call.initial_status == "ringing"
    assert [s for _, s in call.statuses] == ["in-progress"], "it must not end before stop"
    assert len(call.finals()) > 2 * longest, "it keeps going across several dialogues"
    stop.set()
    await simulation

    assert [status for _, status in call.statuses] == ["in-progress", "completed"]
    segments = list(call.segments())
    assert segments == [f"seg_{n}" for n in range(1, len(segments) + 1)]
    assert len(segments) - len(call.finals()) in (0, 1), "only a turn cut off by stop is open"
    starts = [f.segment_start for f in call.finals()]
    assert starts == sorted(starts)


async def test_stop_cancels_ringing_calls_and_completes_answered_ones() -> None:
    """When the simulation stops, a call still ringing ends canceled (it never
    answered) and an answered one ends completed."""
    clock = VirtualClock()
    sink = RecordingSink(clock)
    stop = asyncio.Event()
    simulation = asyncio.create_task(
        run_simulation(
            sink, concurrent_calls=3, rng=random.Random(11), sleep=clock.sleep, stop=stop
        )
    )

    def open_with(status: str) -> list[CallRecord]:
        return [c for c in sink.calls.values() if c.status == status]

    await clock.run_until(lambda: bool(open_with("ringing")) and bool(open_with("in-progress")))
    ringing, talking = open_with("ringing"), open_with("in-progress")
    stop.set()
    await simulation
    assert all([s for _, s in c.statuses] == ["canceled"] for c in ringing)
    assert all([s for _, s in c.statuses] == ["in-progress", "completed"] for c in talking)


async def test_sink_errors_end_only_the_affected_calls(caplog: pytest.LogCaptureFixture) -> None:
    """A sink that raises for one call (or fails to create one) does not stop the simulation."""

    class FlakySink(RecordingSink):
        def __init__(self, clock: VirtualClock) -> None:
            super().__init__(clock)
            self.creates = 0
            self.broken: str | None = None

        async def create_call(
            self,
            call_sid: str,
            *,
            status: str,
            to_phone_number: str,
            customer_phone_number: str,
            call_type: str,
        ) -> None:
            self.creates += 1
            if self.creates == 3:
                raise ConnectionError("storage unavailable")
            await super().create_call(
                call_sid,
                status=status,
                to_phone_number=to_phone_number,
                customer_phone_number=customer_phone_number,
                call_type=call_type,
            )
            if self.broken is None:
                self.broken = call_sid

        async def append_transcript(
            self,
            call_sid: str,
            *,
            content: str,
            speaker: str,
            is_final: bool,
            confidence: float | None,
            segment_start: float,
            segment_end: float,
            segment_id: str,
        ) -> int:
            if call_sid == self.broken and segment_id == "seg_2":
                raise RuntimeError("boom")
            return await super().append_transcript(
                call_sid,
                content=content,
                speaker=speaker,
                is_final=is_final,
                confidence=confidence,
                segment_start=segment_start,
                segment_end=segment_end,
                segment_id=segment_id,
            )

    clock = VirtualClock()
    sink = FlakySink(clock)
    stop = asyncio.Event()
    caplog.set_level(logging.ERROR, logger="scribeline.demo.simulator")
    simulation = asyncio.create_task(
        run_simulation(sink, concurrent_calls=2, rng=random.Random(8), sleep=clock.sleep, stop=stop)
    )

    def completed() -> int:
        return sum(c.endings() == ["completed"] for c in sink.calls.values())

    await clock.run_until(lambda: completed() >= 4)
    stop.set()
    await simulation

    assert sink.broken is not None
    assert [status for _, status in sink.calls[sink.broken].statuses] == ["in-progress", "failed"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in errors)
    assert any(r.exc_info and isinstance(r.exc_info[1], ConnectionError) for r in errors)
    assert sink.broken in caplog.text


async def test_stop_set_before_start_returns_cleanly() -> None:
    """An already-set stop returns at once, touching no call and leaving no task behind."""
    sink = RecordingSink()
    stop = asyncio.Event()
    stop.set()
    before = asyncio.all_tasks()
    await run_simulation(sink, pinned_call_sid="CApinned", sleep=instant_sleep, stop=stop)
    assert sink.calls == {}
    assert asyncio.all_tasks() == before


async def test_invalid_arguments_are_rejected() -> None:
    """Non-positive speed or a negative number of calls is a ValueError, not a silent hang."""
    sink = RecordingSink()
    dialogue = Dialogue("x", (Turn("assistant", "Hello there."),))
    with pytest.raises(ValueError, match="speed"):
        await play_call(sink, "CA1", dialogue, rng=random.Random(), speed=0)
    with pytest.raises(ValueError, match="concurrent_calls"):
        await run_simulation(sink, concurrent_calls=-1)
    assert sink.calls == {}
