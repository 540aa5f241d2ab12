"""Simulated phone calls of an AI voice agent, for ``scribeline demo``.

A call is created ``ringing``, is answered a few seconds later (``in-progress``)
and then plays a scripted :class:`~scribeline.demo.dialogues.Dialogue` the way a
streaming speech recognizer would report it: the words of a turn arrive at
speaking pace, interim results (``is_final=False``) carry the growing start of
the sentence every few words, and a final result with the full text closes the
turn's segment. A call nobody answers (:func:`ring_out`) stays ``ringing`` until
it ends ``no-answer``: only a call that is ``in-progress`` ever speaks.
Everything goes through a :class:`CallSink`, which the server implements.

Time only advances through the injected ``sleep`` function, so the timestamps
a call reports (``segment_start``/``segment_end``, seconds since the call was
created) follow the plan exactly, and tests can run with a fake clock. With
``speed=2`` everything happens twice as fast, timestamps included: they stay
true to the time a viewer actually sees go by.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias

from scribeline.demo.dialogues import DIALOGUES, Dialogue, Speaker, Turn
from scribeline.events import TERMINAL_STATUSES

__all__ = [
    "CallSink",
    "SleepFn",
    "new_call_sid",
    "play_call",
    "random_phone_number",
    "ring_out",
    "run_simulation",
]

logger = logging.getLogger(__name__)

SleepFn: TypeAlias = Callable[[float], Awaitable[None]]
"""Waits the given number of seconds (``asyncio.sleep`` or a fake)."""


class CallSink(Protocol):
    """Where simulated calls go; the server side implements it."""

    async def create_call(
        self,
        call_sid: str,
        *,
        status: str,
        to_phone_number: str,
        customer_phone_number: str,
        call_type: str,
    ) -> None:
        """Create a call in ``status`` (the simulator creates calls ``ringing``)."""

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
    ) -> int: ...  # returns the stored seq

    async def set_status(self, call_sid: str, status: str) -> None: ...


# --- Pacing (natural seconds, i.e. at speed 1) ------------------------------------------------

_WORDS_PER_SECOND: Final[dict[Speaker, tuple[float, float]]] = {
    "user": (2.5, 3.0),
    "assistant": (2.85, 3.15),
}
# Silence between the end of one turn and the start of the next; the agent answers a bit faster.
_GAP_BEFORE: Final[dict[Speaker, tuple[float, float]]] = {
    "user": (0.5, 1.5),
    "assistant": (0.4, 1.0),
}
_RING_TIME: Final = (2.0, 5.0)  # call created (ringing) -> answered (in-progress)
_RING_OUT_TIME: Final = (8.0, 16.0)  # call created (ringing) -> no-answer
_PICKUP_DELAY: Final = (0.6, 1.4)  # answered -> first words
_ENDPOINTING_DELAY: Final = (0.15, 0.35)  # end of speech -> final result (below the gaps)
_INTERIM_EVERY: Final = (2, 4)  # words between interim results
_MAX_PAUSE_SHARE: Final = 0.25  # share of a turn's duration that may be pauses at punctuation
_FINAL_CONFIDENCE: Final[dict[Speaker, tuple[float, float]]] = {
    "user": (0.85, 0.96),
    "assistant": (0.9, 0.98),
}
_INTERIM_CONFIDENCE: Final = (0.55, 0.84)
_INTERIM_NO_CONFIDENCE: Final = 0.3  # chance an interim carries no confidence at all
_SLIP_CHANCE: Final[dict[Speaker, float]] = {"user": 0.25, "assistant": 0.08}

# --- Call lifecycle (natural seconds, scaled by speed) ----------------------------------------

_FIRST_CALL_STAGGER: Final = (3.0, 7.0)  # between the first calls of consecutive slots
_PAUSE_BETWEEN_CALLS: Final = (2.0, 6.0)  # a slot's call ended -> its next call starts
_PINNED_PAUSE_BETWEEN_DIALOGUES: Final = (2.0, 5.0)

# --- Error handling (real seconds, not scaled) ------------------------------------------------

_ERROR_PAUSE: Final = (3.0, 6.0)  # doubled after each consecutive failure ...
_MAX_ERROR_PAUSE: Final = 60.0  # ... up to this

_TRAILING_PUNCTUATION: Final = ",.;:!?"

# Plausible mis-hearings of a word still being spoken; the final result always has it right.
_SLIPS: Final[dict[str, str]] = {
    "account": "count",
    "address": "dress",
    "bill": "build",
    "card": "car",
    "charged": "charge",
    "code": "coat",
    "eight": "ate",
    "expire": "inspire",
    "for": "four",
    "four": "for",
    "fourteenth": "fortieth",
    "jacket": "jackets",
    "know": "no",
    "lamp": "lamb",
    "late": "lake",
    "locked": "lost",
    "password": "passport",
    "plan": "plain",
    "plans": "planes",
    "refund": "refined",
    "right": "write",
    "shade": "shape",
    "so": "sew",
    "their": "there",
    "there": "their",
    "thirty": "thirteen",
    "to": "two",
    "tuesday": "thursday",
    "two": "to",
    "wait": "weight",
    "week": "weak",
    "would": "wood",
}


# --- Public helpers -------------------------------------------------------------------------

_AREA_CODES: Final = (
    "206", "212", "303", "312", "404", "415", "503", "512", "617", "646", "702", "718",
)  # fmt: skip


def new_call_sid(rng: random.Random) -> str:
    """A Twilio-style call SID: ``CA`` and 32 lowercase hex digits."""
    return f"CA{rng.getrandbits(128):032x}"


def random_phone_number(rng: random.Random) -> str:
    """A fictional US number in E.164 (555-0100 to 555-0199), e.g. ``+14155550123``."""
    return f"+1{rng.choice(_AREA_CODES)}55501{rng.randrange(100):02d}"


# --- One call -------------------------------------------------------------------------------


class _CallClock:
    """Seconds since the call was created, advanced only by sleeping."""

    def __init__(self, sleep: SleepFn, speed: float) -> None:
        self._sleep = sleep
        self._speed = speed
        self.elapsed = 0.0

    async def advance(self, natural_seconds: float) -> None:
        """Let ``natural_seconds`` of the script pass (shorter when ``speed`` > 1)."""
        await self.wait(natural_seconds / self._speed)

    async def advance_until(self, elapsed: float) -> None:
        """Wait until ``elapsed`` seconds since the call started (no-op if already past)."""
        await self.wait(elapsed - self.elapsed)

    async def wait(self, seconds: float) -> None:
        if seconds > 0:
            await self._sleep(seconds)
            self.elapsed += seconds

    def scaled(self, natural_seconds: float) -> float:
        return natural_seconds / self._speed


@dataclass(slots=True)
class _CallState:
    """What persists across turns (and, for the pinned call, across dialogues)."""

    call_sid: str
    clock: _CallClock
    next_segment: int = 1
    speech_end: float | None = None  # when the previous turn's last word ended


def _check_speed(speed: float) -> None:
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, got {speed!r}")


def _uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
    return rng.uniform(bounds[0], bounds[1])


def _pause_after(word: str, rng: random.Random) -> float:
    """A short silence after punctuation, in natural seconds."""
    if word.endswith("..."):
        return rng.uniform(0.35, 0.6)
    if word[-1:] in ".?!":
        return rng.uniform(0.2, 0.4)
    if word[-1:] in ",;:":
        return rng.uniform(0.08, 0.2)
    return 0.0


def _word_weight(word: str) -> float:
    """Relative time a word takes to say; five letters is 1."""
    letters = sum(ch.isalnum() for ch in word)
    return min(1.8, max(0.55, 0.4 + 0.12 * letters))


def _plan_turn(
    words: Sequence[str], words_per_second: float, rng: random.Random
) -> tuple[list[float], list[float]]:
    """Natural-time duration of each word and of the pause after it.

    The whole turn (pauses included) takes ``len(words) / words_per_second``.
    """
    total = len(words) / words_per_second
    pauses = [_pause_after(word, rng) for word in words[:-1]] + [0.0]
    pause_total = sum(pauses)
    if pause_total > _MAX_PAUSE_SHARE * total:
        factor = _MAX_PAUSE_SHARE * total / pause_total
        pauses = [pause * factor for pause in pauses]
        pause_total = _MAX_PAUSE_SHARE * total
    weights = [_word_weight(word) * rng.uniform(0.9, 1.1) for word in words]
    speech_per_weight = (total - pause_total) / sum(weights)
    return [weight * speech_per_weight for weight in weights], pauses


def _match_case(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _interim_text(words: Sequence[str], speaker: Speaker, rng: random.Random) -> str:
    """The first words of a turn as a recognizer would guess them mid-sentence.

    The last word has no trailing punctuation yet and is occasionally mis-heard.
    """
    last = words[-1].rstrip(_TRAILING_PUNCTUATION)
    if last and rng.random() < _SLIP_CHANCE[speaker]:
        slip = _SLIPS.get(last.lower())
        if slip is not None:
            last = _match_case(slip, last)
    return " ".join([*words[:-1], last]) if last else " ".join(words)


def _interim_confidence(rng: random.Random) -> float | None:
    if rng.random() < _INTERIM_NO_CONFIDENCE:
        return None
    return round(_uniform(rng, _INTERIM_CONFIDENCE), 2)


async def _speak_turn(sink: CallSink, call: _CallState, turn: Turn, *, rng: random.Random) -> None:
    """Emit the interim results and the final result of one turn, in real time."""
    words = turn.text.split()
    if not words:
        return
    clock = call.clock
    segment_id = f"seg_{call.next_segment}"
    call.next_segment += 1
    start = round(clock.elapsed, 2)
    durations, pauses = _plan_turn(words, _uniform(rng, _WORDS_PER_SECOND[turn.speaker]), rng)
    last_index = len(words)
    next_interim = min(rng.randint(*_INTERIM_EVERY), last_index - 1)
    for index in range(1, last_index + 1):
        await clock.advance(durations[index - 1])
        if index < last_index and index == next_interim:
            await sink.append_transcript(
                call.call_sid,
                content=_interim_text(words[:index], turn.speaker, rng),
                speaker=turn.speaker,
                is_final=False,
                confidence=_interim_confidence(rng),
                segment_start=start,
                segment_end=round(clock.elapsed, 2),
                segment_id=segment_id,
            )
            next_interim = index + rng.randint(*_INTERIM_EVERY)
        await clock.advance(pauses[index - 1])
    speech_end = clock.elapsed
    call.speech_end = speech_end
    await clock.advance(_uniform(rng, _ENDPOINTING_DELAY))
    await sink.append_transcript(
        call.call_sid,
        content=turn.text,
        speaker=turn.speaker,
        is_final=True,
        confidence=round(_uniform(rng, _FINAL_CONFIDENCE[turn.speaker]), 2),
        segment_start=start,
        segment_end=round(speech_end, 2),
        segment_id=segment_id,
    )


async def _play_dialogue(
    sink: CallSink, call: _CallState, dialogue: Dialogue, *, rng: random.Random
) -> None:
    """Play every turn of ``dialogue`` on an already created call."""
    clock = call.clock
    for turn in dialogue.turns:
        if call.speech_end is None:
            await clock.advance(_uniform(rng, _PICKUP_DELAY))
        else:
            gap = clock.scaled(_uniform(rng, _GAP_BEFORE[turn.speaker]))
            await clock.advance_until(call.speech_end + gap)
        await _speak_turn(sink, call, turn, rng=rng)


def _numbers(
    rng: random.Random, to_phone_number: str | None, customer_phone_number: str | None
) -> tuple[str, str]:
    """``(business, customer)``: the given numbers, else distinct random fictional ones."""
    customer = customer_phone_number or random_phone_number(rng)
    business = to_phone_number or random_phone_number(rng)
    while business == customer and to_phone_number is None:
        business = random_phone_number(rng)
    return business, customer


async def _ring(sink: CallSink, call_sid: str, numbers: tuple[str, str], call_type: str) -> None:
    """Create the call ``ringing`` between ``numbers`` (business, customer)."""
    business, customer = numbers
    await sink.create_call(
        call_sid,
        status="ringing",
        to_phone_number=business,
        customer_phone_number=customer,
        call_type=call_type,
    )


async def _answer(sink: CallSink, call: _CallState, rng: random.Random) -> None:
    """Let the call ring a few seconds, then pick it up."""
    await call.clock.advance(_uniform(rng, _RING_TIME))
    await sink.set_status(call.call_sid, "in-progress")


async def play_call(
    sink: CallSink,
    call_sid: str,
    dialogue: Dialogue,
    *,
    rng: random.Random,
    speed: float = 1.0,
    sleep: SleepFn = asyncio.sleep,
    to_phone_number: str | None = None,
    customer_phone_number: str | None = None,
    call_type: str | None = None,
) -> None:
    """Create a call ``ringing``, answer it (``in-progress``), play ``dialogue`` on it
    in real time, then complete it.

    Phone numbers default to random fictional ones and ``call_type`` to the
    dialogue's own. Sink errors propagate; the call is then left as it is.
    """
    _check_speed(speed)
    numbers = _numbers(rng, to_phone_number, customer_phone_number)
    await _ring(sink, call_sid, numbers, call_type or dialogue.call_type)
    call = _CallState(call_sid, _CallClock(sleep, speed))
    await _answer(sink, call, rng)
    await _play_dialogue(sink, call, dialogue, rng=rng)
    await sink.set_status(call_sid, "completed")


async def ring_out(
    sink: CallSink,
    call_sid: str,
    *,
    rng: random.Random,
    speed: float = 1.0,
    sleep: SleepFn = asyncio.sleep,
    to_phone_number: str | None = None,
    customer_phone_number: str | None = None,
    call_type: str = "outbound",
) -> None:
    """Create a call that nobody answers: ``ringing`` for a while, then ``no-answer``.

    It never becomes ``in-progress`` and never speaks. Sink errors propagate.
    """
    _check_speed(speed)
    await _ring(sink, call_sid, _numbers(rng, to_phone_number, customer_phone_number), call_type)
    await _CallClock(sleep, speed).advance(_uniform(rng, _RING_OUT_TIME))
    await sink.set_status(call_sid, "no-answer")


# --- The simulation ------------------------------------------------------------------------


class _TrackingSink:
    """Forwards to a sink and remembers the calls created but not yet ended, with
    their current status."""

    def __init__(self, sink: CallSink) -> None:
        self._sink = sink
        self.open_calls: dict[str, str] = {}  # SID -> status, in creation order

    async def create_call(
        self,
        call_sid: str,
        *,
        status: str,
        to_phone_number: str,
        customer_phone_number: str,
        call_type: str,
    ) -> None:
        await self._sink.create_call(
            call_sid,
            status=status,
            to_phone_number=to_phone_number,
            customer_phone_number=customer_phone_number,
            call_type=call_type,
        )
        self.open_calls[call_sid] = status

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
        return await self._sink.append_transcript(
            call_sid,
            content=content,
            speaker=speaker,
            is_final=is_final,
            confidence=confidence,
            segment_start=segment_start,
            segment_end=segment_end,
            segment_id=segment_id,
        )

    async def set_status(self, call_sid: str, status: str) -> None:
        await self._sink.set_status(call_sid, status)
        if status in TERMINAL_STATUSES:
            self.open_calls.pop(call_sid, None)
        elif call_sid in self.open_calls:
            self.open_calls[call_sid] = status

    async def end_quietly(self, call_sid: str, status: str | None = None) -> None:
        """Best effort: end ``call_sid`` if it is still open, logging any error.
        Without ``status``: ``canceled`` while it rings, else ``completed``."""
        current = self.open_calls.get(call_sid)
        if current is None:
            return
        if status is None:
            status = "canceled" if current == "ringing" else "completed"
        try:
            await self.set_status(call_sid, status)
        except Exception as exc:
            logger.warning("demo call %s: could not set status %r: %r", call_sid, status, exc)


def _pick_dialogue(
    rng: random.Random, dialogues: Sequence[Dialogue], previous: Dialogue | None
) -> Dialogue:
    choices = [d for d in dialogues if d is not previous] or list(dialogues)
    return rng.choice(choices)


def _error_pause(rng: random.Random, failures: int) -> float:
    return min(_MAX_ERROR_PAUSE, _uniform(rng, _ERROR_PAUSE) * 2.0 ** min(failures - 1, 10))


async def _run_slot(
    sink: _TrackingSink,
    slot: int,
    *,
    first_delay: float,
    dialogues: Sequence[Dialogue],
    rng: random.Random,
    speed: float,
    sleep: SleepFn,
) -> None:
    """Keep one ordinary call going: play a call, pause, start another, forever."""
    await sleep(first_delay / speed)
    failures = 0
    previous: Dialogue | None = None
    while True:
        dialogue = _pick_dialogue(rng, dialogues, previous)
        previous = dialogue
        call_sid = new_call_sid(rng)
        logger.debug("demo slot %d: call %s starts (%s)", slot, call_sid, dialogue.title)
        try:
            await play_call(sink, call_sid, dialogue, rng=rng, speed=speed, sleep=sleep)
        except Exception:
            failures += 1
            logger.exception("demo call %s failed; a new call starts after a pause", call_sid)
            await sink.end_quietly(call_sid, "failed")
            await sleep(_error_pause(rng, failures))
        else:
            failures = 0
            await sleep(_uniform(rng, _PAUSE_BETWEEN_CALLS) / speed)


async def _run_pinned_call(
    sink: _TrackingSink,
    call_sid: str,
    *,
    dialogues: Sequence[Dialogue],
    rng: random.Random,
    speed: float,
    sleep: SleepFn,
) -> None:
    """One never-ending support-line call: it rings, is answered, then plays dialogues
    back to back, segment ids continuing."""
    failures = 0
    numbers = _numbers(rng, None, None)
    call = _CallState(call_sid, _CallClock(sleep, speed))
    created = False
    while True:
        try:
            if not created:
                await _ring(sink, call_sid, numbers, "inbound")
                created = True
            await _answer(sink, call, rng)
            break
        except Exception:
            failures += 1
            logger.exception("demo: could not start the pinned call %s; retrying", call_sid)
            await call.clock.wait(_error_pause(rng, failures))
    failures = 0
    previous: Dialogue | None = None
    while True:
        dialogue = _pick_dialogue(rng, dialogues, previous)
        previous = dialogue
        try:
            await _play_dialogue(sink, call, dialogue, rng=rng)
        except Exception:
            failures += 1
            logger.exception("demo: pinned call %s hit an error; carrying on", call_sid)
            await call.clock.wait(_error_pause(rng, failures))
        else:
            failures = 0
            await call.clock.advance(_uniform(rng, _PINNED_PAUSE_BETWEEN_DIALOGUES))


async def _cancel_and_reap(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, Exception):  # CancelledError is not an Exception
            logger.error("demo task %s crashed", task.get_name(), exc_info=result)


async def run_simulation(
    sink: CallSink,
    *,
    concurrent_calls: int = 3,
    pinned_call_sid: str | None = None,
    speed: float = 1.0,
    rng: random.Random | None = None,
    sleep: SleepFn = asyncio.sleep,
    stop: asyncio.Event | None = None,
    dialogues: Sequence[Dialogue] = DIALOGUES,
) -> None:
    """Keep ``concurrent_calls`` simulated calls going until ``stop`` is set.

    The first calls start staggered; each time a call completes, a new one
    (new SID, random dialogue and numbers) starts a few seconds later. A sink
    error ends only the call it happened in (logged, marked ``failed`` if
    possible); a new call follows after a pause.

    With ``pinned_call_sid``, one extra call with that SID starts at once and
    plays dialogues back to back until ``stop`` is set.

    Calls are created ``ringing`` and become ``in-progress`` when answered.
    Once ``stop`` is set, all running calls are cancelled, and every call that
    was created and not yet ended (the pinned one included) is ended:
    ``completed`` if it was answered, ``canceled`` if it was still ringing;
    then this returns. Without ``stop`` it runs until cancelled.
    """
    if concurrent_calls < 0:
        raise ValueError(f"concurrent_calls must be >= 0, got {concurrent_calls!r}")
    if not dialogues:
        raise ValueError("no dialogues to play")
    _check_speed(speed)
    rng = rng if rng is not None else random.Random()
    stop = stop if stop is not None else asyncio.Event()
    tracker = _TrackingSink(sink)

    tasks: list[asyncio.Task[None]] = []
    if pinned_call_sid is not None:
        pinned = _run_pinned_call(
            tracker,
            pinned_call_sid,
            dialogues=dialogues,
            rng=random.Random(rng.getrandbits(64)),
            speed=speed,
            sleep=sleep,
        )
        tasks.append(asyncio.create_task(pinned, name="scribeline-demo-pinned"))
    first_delay = rng.uniform(0.0, 1.0)
    for slot in range(concurrent_calls):
        slot_run = _run_slot(
            tracker,
            slot,
            first_delay=first_delay,
            dialogues=dialogues,
            rng=random.Random(rng.getrandbits(64)),
            speed=speed,
            sleep=sleep,
        )
        tasks.append(asyncio.create_task(slot_run, name=f"scribeline-demo-slot-{slot}"))
        first_delay += _uniform(rng, _FIRST_CALL_STAGGER)

    try:
        await stop.wait()
    finally:
        await _cancel_and_reap(tasks)

    open_calls = list(tracker.open_calls)
    for call_sid in open_calls:
        await tracker.end_quietly(call_sid)
    logger.debug("demo stopped; ended %d open call(s)", len(open_calls))
