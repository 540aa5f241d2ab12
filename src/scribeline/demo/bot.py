"""The simulated meeting bot behind ``scribeline bots simulate`` and the demo.

It plays a :class:`~scribeline.demo.meeting_script.MeetingScript` on a bot's
producer WebSocket (``GET /v1/bots/{id}/producer``) the way a real meeting bot
reports what it hears, and carries out the actions the server forwards.

Planning is pure (:func:`plan_meeting`) and time only advances through the
injected ``sleep`` (:func:`play_plan`), so tests can use a fake clock. With
``speed=2`` everything happens twice as fast, transcript timestamps included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeAlias

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from scribeline.demo.meeting_script import WEEKLY_SYNC, MeetingScript, Participant
from scribeline.demo.simulator import SleepFn

__all__ = [
    "EndReason",
    "PlannedEvent",
    "ProducerConnection",
    "plan_meeting",
    "play_meeting",
    "play_plan",
    "run_bot",
]

logger = logging.getLogger(__name__)

EndReason: TypeAlias = Literal[
    "script_finished", "stop_action", "stopped_by_server", "stopping", "replaced"
]
"""Why a bot run ended: the bot sent ``stop`` after its script, a ``stop`` action or
the caller's ``stop`` event; the server ended the bot (its ``stop`` or ``error`` event,
``bot_ended`` or a clean close); or another producer replaced this one."""

# --- Pacing (natural seconds, i.e. at speed 1) ------------------------------------------------

_JOIN_PAUSE: Final = (0.3, 0.9)  # start -> first participant, and between participants
_FIRST_WORDS: Final = (1.0, 2.5)  # last participant tracked -> first sentence
_WORDS_PER_SECOND: Final = (2.5, 3.0)
_GAP: Final = (0.3, 1.2)  # end of one sentence -> start of the next
_LOOP_PAUSE: Final = (3.0, 6.0)  # end of the script -> its next play
_END_PAUSE: Final = (0.5, 1.5)  # last sentence -> stop

# Real bots match a voice to a participant only after hearing a little of the meeting.
_NAME_AFTER_OWN_SENTENCES: Final = 1
_NAME_AFTER_MEETING_SENTENCES: Final = 3

_TIMESTAMP_DECIMALS: Final = 3  # milliseconds: at high speeds, centiseconds would collapse
_MAX_CHAT_CHARS: Final = 2_000
_MAX_FRAME_BYTES: Final = 64 * 1024
_SETTLE_TIMEOUT: Final = 10.0  # real seconds to wait for the server to confirm our stop


# --- Planning (pure) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One producer event and when to send it.

    ``at`` is in seconds since the meeting started, already divided by the speed.
    """

    at: float
    type: str
    data: Mapping[str, object]


def _check_speed(speed: float) -> None:
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, got {speed!r}")


def _uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
    return rng.uniform(bounds[0], bounds[1])


def _participant(participant: Participant) -> dict[str, object]:
    return {"participantId": participant.id, "participantName": participant.name}


def plan_meeting(
    script: MeetingScript = WEEKLY_SYNC,
    *,
    rng: random.Random,
    speed: float = 1.0,
    loop: bool = False,
) -> Iterator[PlannedEvent]:
    """The events a bot sends for ``script``, in order, each with its send time.

    ``start`` at 0, ``participant-tracked`` for every participant a short
    pause apart, then per sentence ``started-speaking``, ``ts`` and
    ``stopped-speaking`` (the last two when the sentence ends), and a final
    ``stop`` with reason ``meeting_ended``. A ``ts`` has ``speaker_name`` null
    until its speaker has said a sentence before and the meeting is past its
    third sentence. With ``loop`` the script plays again and again (the
    iterator never ends, timestamps keep increasing, names stay known).
    Consumes ``rng`` lazily.
    """
    _check_speed(speed)
    return _plan(script, rng, speed, loop)


def _plan(
    script: MeetingScript, rng: random.Random, speed: float, loop: bool
) -> Iterator[PlannedEvent]:
    now = 0.0
    yield PlannedEvent(now, "start", {})
    for participant in script.participants:
        now += _uniform(rng, _JOIN_PAUSE) / speed
        yield PlannedEvent(now, "participant-tracked", _participant(participant))
    now += _uniform(rng, _FIRST_WORDS) / speed
    own_sentences: Counter[int] = Counter()
    meeting_sentences = 0
    while True:
        for index, line in enumerate(script.lines):
            if index > 0:
                now += _uniform(rng, _GAP) / speed
            speaker = script.speaker_of(line)
            words = len(line.text.split())
            end = now + words / _uniform(rng, _WORDS_PER_SECOND) / speed
            name_known = (
                own_sentences[line.speaker] >= _NAME_AFTER_OWN_SENTENCES
                and meeting_sentences >= _NAME_AFTER_MEETING_SENTENCES
            )
            yield PlannedEvent(now, "started-speaking", _participant(speaker))
            transcript: dict[str, object] = {
                "transcript": line.text,
                "start": round(now, _TIMESTAMP_DECIMALS),
                "end": round(end, _TIMESTAMP_DECIMALS),
                "speaker": line.speaker,
                "speaker_name": speaker.name if name_known else None,
            }
            yield PlannedEvent(end, "ts", transcript)
            yield PlannedEvent(end, "stopped-speaking", _participant(speaker))
            own_sentences[line.speaker] += 1
            meeting_sentences += 1
            now = end
        if not loop:
            break
        now += _uniform(rng, _LOOP_PAUSE) / speed
    now += _uniform(rng, _END_PAUSE) / speed
    yield PlannedEvent(now, "stop", {"reason": "meeting_ended"})


async def play_plan(
    events: Iterable[PlannedEvent],
    send: Callable[[PlannedEvent], Awaitable[object]],
    *,
    sleep: SleepFn = asyncio.sleep,
) -> None:
    """Hand each event to ``send`` once its time has come, in order.

    Time passes only through ``sleep``: the wait before an event is its ``at``
    minus the ``at`` of the last event that needed a wait.
    """
    elapsed = 0.0
    for event in events:
        if event.at > elapsed:
            await sleep(event.at - elapsed)
            elapsed = event.at
        await send(event)


# --- I/O --------------------------------------------------------------------------------------


class ProducerConnection(Protocol):
    """What the bot needs of its WebSocket (a websockets ``ClientConnection`` fits)."""

    async def send(self, message: str) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


class _BotSession:
    """One run of the bot on one connection: the only writer, the reader and the outcome."""

    def __init__(self, connection: ProducerConnection, bot_name: str) -> None:
        self._connection = connection
        self._bot_name = bot_name
        self._lock = asyncio.Lock()
        self._closed = False  # once set, nothing more is sent
        self._next_ref = 1
        self.outcome: asyncio.Future[EndReason] = asyncio.get_running_loop().create_future()
        self.stop_ref: int | None = None
        self.stop_sent = False
        self.stop_settled = asyncio.Event()
        self.sent = 0
        self.acked = 0

    def _conclude(self, reason: EndReason) -> None:
        if not self.outcome.done():
            self.outcome.set_result(reason)

    def _fail(self, exc: BaseException) -> None:
        if not self.outcome.done():
            self.outcome.set_exception(exc)

    async def send(
        self, event_type: str, data: Mapping[str, object], *, ends_as: EndReason | None = None
    ) -> bool:
        """Send one event unless the bot has stopped; ``ends_as`` marks the final ``stop``.

        Returns whether it was sent. Holding the lock for the whole send keeps
        the order of the callers and never splits one message.
        """
        async with self._lock:
            if self._closed:
                logger.debug("bot: %s not sent, the bot has stopped", event_type)
                return False
            ref = self._next_ref
            self._next_ref += 1
            if ends_as is not None:
                self._closed = True
                self.stop_ref = ref
            frame = orjson.dumps({"type": event_type, "data": data, "ref": ref}).decode()
            await self._connection.send(frame)
            self.sent += 1
            if ends_as is not None:
                self.stop_sent = True
                self._conclude(ends_as)
            return True

    async def send_planned(self, event: PlannedEvent) -> None:
        """Send an event of the plan (its ``stop`` ends the run as ``script_finished``)."""
        ends_as: EndReason | None = "script_finished" if event.type == "stop" else None
        await self.send(event.type, event.data, ends_as=ends_as)

    def _ended_by_server(self, reason: EndReason) -> None:
        self._closed = True
        self._conclude(reason)

    async def guarded(self, work: Awaitable[None]) -> None:
        """Run ``work``; a crash ends the run, a closed connection is left to the reader."""
        try:
            await work
        except ConnectionClosed:
            pass
        except Exception as exc:
            self._fail(exc)

    async def stop_when_set(self, stop: asyncio.Event) -> None:
        """Send ``stop`` (reason ``meeting_ended``) once ``stop`` is set."""
        await stop.wait()
        await self.send("stop", {"reason": "meeting_ended"}, ends_as="stopping")

    async def read(self) -> None:
        """Handle what the server sends until it closes the connection."""
        try:
            async for raw in self._connection:
                message = _decode(raw)
                if message is not None:
                    await self._handle(message)
        except Exception as exc:  # ConnectionClosedError among others: a clean close ends the loop
            self._fail(exc)
        else:
            self._ended_by_server("stopped_by_server")

    async def _handle(self, message: dict[str, object]) -> None:
        if "action" in message:
            await self._perform(message)
            return
        kind = message.get("type")
        if (
            kind in ("ack", "error")
            and self.stop_ref is not None
            and message.get("ref") == self.stop_ref
        ):
            self.stop_settled.set()
        if kind == "ack":
            self.acked += 1
        elif kind == "error" and "data" in message:
            logger.warning("bot: the server ended the bot with an error: %s", message.get("data"))
            self._ended_by_server("stopped_by_server")
        elif kind == "error":
            code = message.get("error")
            logger.warning(
                "bot: the server refused a message: %s (%s)", code, message.get("message")
            )
            if code == "replaced":
                self._ended_by_server("replaced")
            elif code == "bot_ended":
                self._ended_by_server("stopped_by_server")
        elif kind == "stop":
            logger.info("bot: the server stopped the bot")
            self._ended_by_server("stopped_by_server")
        else:
            logger.debug("bot: ignoring a message of type %r", kind)

    async def _perform(self, message: dict[str, object]) -> None:
        action = message.get("action")
        # The reader goes on after a failed send: the close shows up in its loop.
        with contextlib.suppress(ConnectionClosed):
            if action == "chat-message":
                data = message.get("data")
                content = data.get("content") if isinstance(data, dict) else None
                if not isinstance(content, str) or not 0 < len(content) <= _MAX_CHAT_CHARS:
                    logger.warning("bot: ignoring a chat-message action without valid content")
                    return
                chat = {"username": self._bot_name, "content": content, "user_avatar": None}
                await self.send("chat-message", chat)
            elif action == "stop":
                logger.info("bot: stop action received")
                await self.send("stop", {"reason": "manually_stopped"}, ends_as="stop_action")
            else:
                logger.warning("bot: ignoring unknown action %r", action)

    async def settle(self, reader: asyncio.Task[None], within: float) -> None:
        """Wait until the server acknowledged our stop (or closed), at most ``within`` s."""
        waiter = asyncio.create_task(self.stop_settled.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, reader}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if not done:
            logger.warning("bot: the server did not confirm the stop within %.0f s", within)


def _decode(raw: str | bytes) -> dict[str, object] | None:
    message: object = None
    if isinstance(raw, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            message = orjson.loads(raw)
    if isinstance(message, dict):
        return message
    logger.warning("bot: ignoring a frame that is not a JSON object")
    return None


async def play_meeting(
    connection: ProducerConnection,
    events: Iterable[PlannedEvent],
    *,
    bot_name: str = "Notetaker",
    stop: asyncio.Event | None = None,
    sleep: SleepFn = asyncio.sleep,
    settle_timeout: float = _SETTLE_TIMEOUT,
) -> EndReason:
    """Play ``events`` on an open producer ``connection`` and say why it ended.

    Events go out at their time (through ``sleep``) while the server's
    messages are handled: acks are counted, a ``chat-message`` action is
    echoed as a ``chat-message`` event from ``bot_name``, a ``stop`` action
    makes the bot send ``stop`` (reason ``manually_stopped``). Setting
    ``stop`` makes it send ``stop`` (reason ``meeting_ended``). Every send
    goes through one writer and nothing is sent after a ``stop``; after its
    own ``stop`` the bot waits up to ``settle_timeout`` real seconds for the
    server's ack. An abnormal close raises ``ConnectionClosedError``.
    """
    session = _BotSession(connection, bot_name)
    player = asyncio.create_task(
        session.guarded(play_plan(events, session.send_planned, sleep=sleep)),
        name="scribeline-bot-player",
    )
    reader = asyncio.create_task(session.read(), name="scribeline-bot-reader")
    tasks = [player, reader]
    if stop is not None:
        stopper = session.guarded(session.stop_when_set(stop))
        tasks.append(asyncio.create_task(stopper, name="scribeline-bot-stopper"))
    try:
        reason = await session.outcome
        if session.stop_sent:
            await session.settle(reader, settle_timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    logger.info(
        "bot %r ended (%s): %d sent, %d acked", bot_name, reason, session.sent, session.acked
    )
    return reason


async def run_bot(
    producer_url: str,
    *,
    bot_name: str = "Notetaker",
    speed: float = 1.0,
    loop: bool = False,
    rng: random.Random | None = None,
    stop: asyncio.Event | None = None,
    sleep: SleepFn = asyncio.sleep,
    script: MeetingScript = WEEKLY_SYNC,
) -> EndReason:
    """Connect to a bot's ``producer_url`` and play ``script`` on it as a meeting bot.

    See :func:`plan_meeting` for what is sent and :func:`play_meeting` for how
    the server's messages are handled. With ``loop`` the script repeats until
    a ``stop`` action, ``stop`` or the server ends the bot. Connection errors
    propagate.
    """
    _check_speed(speed)
    rng = rng if rng is not None else random.Random()
    events = plan_meeting(script, rng=rng, speed=speed, loop=loop)
    # The URL carries the producer token, so it is never logged.
    async with connect(producer_url, max_size=_MAX_FRAME_BYTES) as connection:
        logger.info("bot %r connected, playing %r", bot_name, script.title)
        return await play_meeting(connection, events, bot_name=bot_name, stop=stop, sleep=sleep)
