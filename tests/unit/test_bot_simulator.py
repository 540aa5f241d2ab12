"""Unit tests for the simulated meeting bot (scribeline.demo.bot) and its meeting script."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from scribeline.demo.bot import PlannedEvent, plan_meeting, play_meeting, play_plan, run_bot
from scribeline.demo.meeting_script import WEEKLY_SYNC, Line, MeetingScript, Participant

SPEAKING = ("started-speaking", "ts", "stopped-speaking")


# --- Fakes ------------------------------------------------------------------------------------


class FakeClock:
    """Time that passes only when the code under test sleeps; sleeping costs no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # a real sleep yields to other tasks, so this one does too


class FakeProducerEndpoint:
    """An in-memory producer connection that acks every message, like the server."""

    def __init__(self, on_message: Callable[[FakeProducerEndpoint, dict[str, Any]], None]) -> None:
        self.sent: list[dict[str, Any]] = []
        self._on_message = on_message
        self._incoming: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, message: str) -> None:
        event = orjson.loads(message)
        self.sent.append(event)
        self.push({"type": "ack", "seq": len(self.sent), "ref": event["ref"]})
        self._on_message(self, event)

    def push(self, message: dict[str, Any]) -> None:
        self._incoming.put_nowait(orjson.dumps(message).decode())

    def close(self) -> None:
        self._incoming.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while (message := await self._incoming.get()) is not None:
            yield message


def plan(seed: int = 1, speed: float = 1.0) -> list[PlannedEvent]:
    return list(plan_meeting(rng=random.Random(seed), speed=speed))


def transcripts(events: list[PlannedEvent]) -> list[dict[str, Any]]:
    return [dict(event.data) for event in events if event.type == "ts"]


# --- The script -------------------------------------------------------------------------------


def test_weekly_sync_is_a_three_person_meeting_of_30_to_40_sentences() -> None:
    """Stable ids p-1..p-3, distinct names, everyone speaks, every line is one sentence."""
    script = WEEKLY_SYNC
    assert [p.id for p in script.participants] == ["p-1", "p-2", "p-3"]
    assert len({p.name for p in script.participants}) == 3
    assert 30 <= len(script.lines) <= 40
    assert {line.speaker for line in script.lines} == {0, 1, 2}
    assert all(line.text.strip() and line.text[-1] in ".?!" for line in script.lines)
    assert script.word_count() == sum(len(line.text.split()) for line in script.lines)


def test_a_script_refuses_a_line_from_nobody() -> None:
    with pytest.raises(ValueError, match="no participant"):
        MeetingScript("x", (Participant("p-1", "A", "PM"),), (Line(1, "Hello."),))


# --- The plan ---------------------------------------------------------------------------------


def test_plan_tracks_everyone_first_then_speaks_each_line_then_stops() -> None:
    """start, three participant-tracked, (started, ts, stopped) per line in script order, stop."""
    events = plan()
    lines = WEEKLY_SYNC.lines
    assert len(events) == 1 + 3 + 3 * len(lines) + 1
    assert events[0] == PlannedEvent(0.0, "start", {})
    tracked = events[1:4]
    assert [e.type for e in tracked] == ["participant-tracked"] * 3
    assert [e.data["participantId"] for e in tracked] == ["p-1", "p-2", "p-3"]
    for index, line in enumerate(lines):
        started, ts, stopped = events[4 + 3 * index : 7 + 3 * index]
        assert (started.type, ts.type, stopped.type) == SPEAKING
        speaker = WEEKLY_SYNC.participants[line.speaker]
        assert (
            started.data
            == stopped.data
            == {
                "participantId": speaker.id,
                "participantName": speaker.name,
            }
        )
        assert ts.data["transcript"] == line.text
        assert ts.data["speaker"] == line.speaker
    assert events[-1].type == "stop"
    assert events[-1].data == {"reason": "meeting_ended"}


def test_plan_times_follow_speaking_pace_and_gaps() -> None:
    """Times never go back; a ts covers its sentence at 2.5-3 words/s and is sent at its end."""
    events = plan(seed=3)
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    assert all(0.3 <= b.at - a.at <= 0.9 for a, b in itertools.pairwise(events[:4]))
    previous_end: float | None = None
    for index in range(len(WEEKLY_SYNC.lines)):
        started, ts, stopped = events[4 + 3 * index : 7 + 3 * index]
        start, end = ts.data["start"], ts.data["end"]
        assert isinstance(start, float) and isinstance(end, float)
        assert start == round(started.at, 3) and end == round(ts.at, 3)
        assert stopped.at == ts.at
        words = len(str(ts.data["transcript"]).split())
        assert 2.5 - 0.01 <= words / (end - start) <= 3.0 + 0.01
        if previous_end is not None:
            assert 0.3 - 0.002 <= start - previous_end <= 1.2 + 0.002
        previous_end = end
    assert 0.5 <= events[-1].at - events[-2].at <= 1.5


def test_plan_at_higher_speed_is_the_same_meeting_compressed() -> None:
    """Same seed: same events, every time and timestamp divided by the speed."""
    slow, fast = plan(seed=5, speed=1.0), plan(seed=5, speed=4.0)
    assert [(e.type, e.data.get("transcript")) for e in slow] == [
        (e.type, e.data.get("transcript")) for e in fast
    ]
    for a, b in zip(slow, fast, strict=True):
        assert b.at == pytest.approx(a.at / 4)
    for a_ts, b_ts in zip(transcripts(slow), transcripts(fast), strict=True):
        assert b_ts["start"] == pytest.approx(a_ts["start"] / 4, abs=0.001)
        assert b_ts["end"] == pytest.approx(a_ts["end"] / 4, abs=0.001)


def test_speaker_names_are_null_at_first_then_resolved_for_good() -> None:
    """Null for a speaker's first sentence and the meeting's first three, the name after."""
    seen: set[int] = set()
    resolved: set[int] = set()
    for index, ts in enumerate(transcripts(plan())):
        speaker = ts["speaker"]
        name = WEEKLY_SYNC.participants[speaker].name
        expected = name if speaker in seen and index >= 3 else None
        assert ts["speaker_name"] == expected
        assert not (speaker in resolved and ts["speaker_name"] is None), "a name got lost"
        if expected is not None:
            resolved.add(speaker)
        seen.add(speaker)
    assert resolved == {0, 1, 2}
    nulls = {ts["speaker"] for ts in transcripts(plan()) if ts["speaker_name"] is None}
    assert nulls == {0, 1, 2}  # every speaker starts unnamed in this script


def test_looping_plan_replays_the_script_with_later_timestamps_and_known_names() -> None:
    """No stop; the second play has the same lines, later times and every name resolved."""
    per_play = 3 * len(WEEKLY_SYNC.lines)
    events = list(
        itertools.islice(plan_meeting(rng=random.Random(2), loop=True), 4 + 2 * per_play + 3)
    )
    assert all(event.type != "stop" for event in events)
    first, second = events[4 : 4 + per_play], events[4 + per_play : 4 + 2 * per_play]
    assert [(e.type, e.data.get("transcript")) for e in first] == [
        (e.type, e.data.get("transcript")) for e in second
    ]
    assert second[0].at - first[-1].at >= 3.0
    assert all(ts["speaker_name"] is not None for ts in transcripts(second))
    starts = [ts["start"] for ts in transcripts(events)]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_plan_refuses_a_speed_that_is_not_positive() -> None:
    for speed in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="speed"):
            plan_meeting(rng=random.Random(), speed=speed)


async def test_play_plan_sends_each_event_when_the_fake_clock_reaches_it() -> None:
    """Time passes only through the injected sleep; each event goes out at its ``at``."""
    clock = FakeClock()
    events = plan(seed=4, speed=2.0)
    sent_at: list[tuple[float, PlannedEvent]] = []

    async def send(event: PlannedEvent) -> None:
        sent_at.append((clock.now, event))

    await play_plan(events, send, sleep=clock.sleep)
    assert [event for _, event in sent_at] == events
    assert all(now == pytest.approx(event.at) for now, event in sent_at)
    assert sum(clock.sleeps) == pytest.approx(events[-1].at)


# --- The bot on a connection (in memory) ------------------------------------------------------


async def test_bot_sends_stop_when_asked_to_stop_and_nothing_after() -> None:
    """Setting ``stop`` ends a looping meeting with stop(meeting_ended) as the last message."""
    stop = asyncio.Event()

    def on_message(endpoint: FakeProducerEndpoint, event: dict[str, Any]) -> None:
        if event["type"] == "ts" and event["data"]["start"] > 20:
            stop.set()
        if event["type"] == "stop":
            endpoint.close()

    endpoint = FakeProducerEndpoint(on_message)
    events = plan_meeting(rng=random.Random(8), loop=True)
    reason = await play_meeting(endpoint, events, stop=stop, sleep=FakeClock().sleep)
    assert reason == "stopping"
    assert endpoint.sent[-1]["type"] == "stop"
    assert endpoint.sent[-1]["data"] == {"reason": "meeting_ended"}
    assert [m["type"] for m in endpoint.sent].count("stop") == 1
    assert [m["ref"] for m in endpoint.sent] == list(range(1, len(endpoint.sent) + 1))


@pytest.mark.parametrize(
    ("server_message", "expected"),
    [
        ({"type": "stop", "data": {}}, "stopped_by_server"),
        ({"type": "error", "data": {"message": "meeting unreachable"}}, "stopped_by_server"),
        ({"type": "error", "error": "replaced", "message": "another producer"}, "replaced"),
    ],
)
async def test_bot_ends_without_a_stop_when_the_server_ends_it(
    server_message: dict[str, Any], expected: str
) -> None:
    """The server's stored stop/error (or a replacement) ends the bot; it sends nothing more."""
    sent_before_end: list[int] = []

    def on_message(endpoint: FakeProducerEndpoint, event: dict[str, Any]) -> None:
        if event["type"] == "ts" and not sent_before_end:
            sent_before_end.append(len(endpoint.sent))
            endpoint.push(server_message)
            endpoint.close()

    endpoint = FakeProducerEndpoint(on_message)
    events = plan_meeting(rng=random.Random(9), loop=True)
    reason = await play_meeting(endpoint, events, sleep=FakeClock().sleep)
    assert reason == expected
    assert all(m["type"] != "stop" for m in endpoint.sent)


# --- The bot over a real WebSocket ------------------------------------------------------------


async def test_run_bot_echoes_chat_and_obeys_a_stop_action_over_websocket() -> None:
    """Against an endpoint acting like the server: echo the chat, stop(manually_stopped), last.

    The endpoint reads until the bot closes and slips one more chat action in
    before acking the stop, so anything the bot sent after its stop would show.
    """
    received: list[dict[str, Any]] = []
    client_gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(connection: ServerConnection, message: dict[str, Any]) -> None:
        await connection.send(orjson.dumps(message).decode())

    async def producer_endpoint(connection: ServerConnection) -> None:
        async for raw in connection:
            message = orjson.loads(raw)
            received.append(message)
            if message["type"] == "stop":
                await send(connection, {"action": "chat-message", "data": {"content": "Late"}})
            await send(connection, {"type": "ack", "seq": len(received), "ref": message["ref"]})
            if message["type"] == "ts" and sum(m["type"] == "ts" for m in received) == 2:
                await send(connection, {"action": "chat-message", "data": {"content": "Welcome!"}})
            if message["type"] == "chat-message":
                await send(connection, {"action": "stop"})
        client_gone.set_result(None)

    async with serve(producer_endpoint, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/v1/bots/b-1/producer?token=t"
        # Fast, yet the script outlasts a local round trip many times over.
        reason = await run_bot(url, bot_name="Notetaker", speed=300, rng=random.Random(11))
        await client_gone

    assert reason == "stop_action"
    types = [m["type"] for m in received]
    assert types[:4] == ["start", *["participant-tracked"] * 3]
    chat = [m for m in received if m["type"] == "chat-message"]
    assert [m["data"] for m in chat] == [
        {"username": "Notetaker", "content": "Welcome!", "user_avatar": None}
    ]
    assert received[-1]["type"] == "stop"
    assert received[-1]["data"] == {"reason": "manually_stopped"}
    assert types.count("stop") == 1
    assert types.index("chat-message") < types.index("stop")
