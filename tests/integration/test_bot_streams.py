"""Meeting-bot streams: subscribers, actions, pings, stopping, limits, the producer
and durability, against a real server over real sockets (PROTOCOL section 4)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .bot_helpers import create_bot, open_url, participant, produce, ts
from .helpers import (
    RECV_TIMEOUT,
    Api,
    Response,
    ServerProcess,
    Tenant,
    collect_until_closed,
    expect_close,
    recv_json,
    running_server,
    send_json,
)

PING_INTERVAL = 0.4
STOP_TIMEOUT = 0.5
#: What a subscriber receives for each kind of bot event, as the producer sends it.
START = {"type": "start", "data": {}}
MANUAL_STOP = {"type": "stop", "data": {"reason": "manually_stopped"}}
PING = {"type": "ping", "data": {}}


def chat(content: str) -> dict[str, Any]:
    """A read-write client's chat-message action, as the producer receives it too."""
    return {"action": "chat-message", "data": {"content": content}}


def event(kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": kind, "data": data or {}}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with 0.4 s bot pings and a 0.5 s stop timeout."""
    env = {
        "SCRIBELINE_BOT_PING_INTERVAL": str(PING_INTERVAL),
        "SCRIBELINE_BOT_STOP_TIMEOUT": str(STOP_TIMEOUT),
    }
    with running_server(tmp_path_factory.mktemp("bots-fast") / "data", env) as srv:
        yield srv


@pytest.fixture(scope="module")
def fast_tenant(fast_server: ServerProcess) -> Tenant:
    return fast_server.create_tenant("bots-fast")


@pytest.fixture
def fast_api(http: aiohttp.ClientSession, fast_server: ServerProcess, fast_tenant: Tenant) -> Api:
    return Api(http, fast_server, fast_tenant.rw)


@dataclass
class Meeting:
    """One bot and every WebSocket a test opened on it."""

    api: Api
    bot: dict[str, Any]
    sockets: list[ClientConnection] = field(default_factory=list)

    @property
    def id(self) -> str:
        bot_id: str = self.bot["id"]
        return bot_id

    async def connect(self, url: str) -> ClientConnection:
        ws = await open_url(url)
        self.sockets.append(ws)
        return ws

    async def subscribe(self, *, read_only: bool = False) -> ClientConnection:
        """A subscriber that is live: the server answers pings only once it has joined."""
        ws = await self.connect(
            self.bot["websocket_read_only_url" if read_only else "websocket_url"]
        )
        await synced(ws)
        return ws

    async def producer(self) -> ClientConnection:
        """A producer connection that already follows the bot's actions."""
        ws = await self.connect(self.bot["producer_url"])
        await synced(ws)
        return ws

    async def start(self) -> ClientConnection:
        """Connect the producer and send ``start`` (seq 1)."""
        producer = await self.producer()
        assert await produce(producer, "start") == 1
        return producer

    async def get(self) -> dict[str, Any]:
        resp = await self.api.request("GET", f"/v1/bots/{self.id}")
        assert resp.status == 200, f"get bot: {resp.status} {resp.text}"
        body: dict[str, Any] = resp.body
        return body

    async def rest_stop(self) -> Response:
        return await self.api.request("POST", f"/v1/bots/{self.id}/stop")


@pytest.fixture
async def new_meeting() -> AsyncIterator[Callable[[Api], Awaitable[Meeting]]]:
    """Create bots; every socket opened on them is closed after the test."""
    meetings: list[Meeting] = []

    async def make(api: Api) -> Meeting:
        meeting = Meeting(api, await create_bot(api))
        meetings.append(meeting)
        return meeting

    yield make
    for meeting in meetings:
        for ws in meeting.sockets:
            await ws.close()


# --------------------------------------------------------------------------- helpers


async def synced(ws: ClientConnection) -> None:
    """Wait until the server reads this connection (it answers a WebSocket ping)."""
    pong = await ws.ping()
    await asyncio.wait_for(pong, RECV_TIMEOUT)


async def recv_event(ws: ClientConnection, within: float = RECV_TIMEOUT) -> dict[str, Any]:
    """The next message that is not a ``ping`` event."""
    while (msg := await recv_json(ws, within)) == PING:
        pass
    return msg


async def events_until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int]:
    """Every non-ping message until the server closes, and the close code."""
    msgs, code = await collect_until_closed(ws)
    return [m for m in msgs if m != PING], code


async def expect_action(producer: ClientConnection, action: dict[str, Any]) -> None:
    """The next thing the producer receives is exactly ``action``."""
    msg = await recv_json(producer)
    assert msg == action, f"the producer expected {action}, got {msg}"


def assert_error(msg: dict[str, Any], code: str, ref: Any = None) -> None:
    """A producer error message with this code (and ``ref`` exactly when sent)."""
    assert msg.get("type") == "error" and msg.get("error") == code, msg
    assert isinstance(msg.get("message"), str) and msg["message"], msg
    if ref is None:
        assert "ref" not in msg, msg
    else:
        assert msg["ref"] == ref, msg


# --------------------------------------------------------------------------- actions


async def test_read_write_chat_action_reaches_the_producer(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """A chat-message action on the read-write URL reaches the producer unchanged."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    rw = await meeting.subscribe()
    await send_json(rw, chat("Welcome!"))
    await expect_action(producer, {"action": "chat-message", "data": {"content": "Welcome!"}})


async def test_read_only_actions_are_not_performed_and_the_connection_stays_open(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Chat and stop actions from the read-only URL never reach the producer, the bot keeps
    recording and the read-only connection still receives later events."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    ro = await meeting.subscribe(read_only=True)
    rw = await meeting.subscribe()

    await send_json(ro, chat("from a read-only client"))
    await send_json(rw, chat("marker 1"))
    await expect_action(producer, chat("marker 1"))

    await send_json(ro, {"action": "stop"})
    await send_json(rw, chat("marker 2"))
    await expect_action(producer, chat("marker 2"))
    await send_json(rw, chat("marker 3"))
    await expect_action(producer, chat("marker 3"))

    said = {"username": "Ana", "content": "still here", "user_avatar": None}
    await produce(producer, "chat-message", said)
    assert await recv_json(ro) == event("chat-message", said)
    assert (await meeting.get())["status"] == "recording"


async def test_malformed_actions_are_dropped_without_closing(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Actions without valid data, unknown actions, invalid JSON and binary frames are not
    performed and the read-write connection stays open."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    rw = await meeting.subscribe()
    for frame in (
        '{"action": "chat-message"}',
        '{"action": "chat-message", "data": {"content": ""}}',
        '{"action": "chat-message", "data": {"content": 42}}',
        '{"action": "chat-message", "data": {"content": "' + "x" * 2001 + '"}}',
        '{"action": "dance", "data": {"content": "hi"}}',
        '{"action": "chat-message", "data": {"content": "unterminated',
        b'{"action": "stop"}',
    ):
        await rw.send(frame)
    await send_json(rw, chat("marker"))
    await expect_action(producer, chat("marker"))

    said = {"username": "Ana", "content": "after the junk", "user_avatar": None}
    await produce(producer, "chat-message", said)
    assert await recv_json(rw) == event("chat-message", said)
    assert (await meeting.get())["status"] == "recording"


async def test_actions_from_one_client_reach_the_producer_in_order(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Actions sent back to back by one read-write client reach the producer in that order."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    rw = await meeting.subscribe()
    contents = [f"message {i}" for i in range(8)]
    for content in contents:
        await send_json(rw, chat(content))
    received = [await recv_json(producer) for _ in contents]
    assert received == [chat(c) for c in contents]


# --------------------------------------------------------------------------- fan-out


async def test_every_event_type_reaches_every_subscriber_in_order(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Five subscribers (read-write and read-only) each get every event in order in the
    documented shape, then close 1000 after stop and nothing more."""
    meeting = await new_meeting(api_a)
    subscribers = [await meeting.subscribe(read_only=i % 2 == 1) for i in range(5)]
    producer = await meeting.producer()
    sent = [
        event("start"),
        event("participant-tracked", participant("p1", "John Doe")),
        event("participant-tracked", participant("p2")),
        event("started-speaking", participant("p1", "John Doe")),
        event("ts", ts("Hello everyone.", 0.5, 1.4, 0, "John Doe")),
        event("ts", ts("Hi.", 1.5, 1.5, 1)),
        event("stopped-speaking", participant("p1", "John Doe")),
        event("chat-message", {"username": "Ana", "content": "Hi all", "user_avatar": None}),
    ]
    seqs = [await produce(producer, m["type"], m["data"]) for m in sent]
    seqs.append(await produce(producer, "stop", {"reason": "meeting_ended"}))
    assert seqs == list(range(1, len(sent) + 2))
    assert await expect_close(producer) == 1000

    for ws in subscribers:
        msgs, code = await collect_until_closed(ws)
        assert code == 1000
        assert all(set(m) == {"type", "data"} for m in msgs), msgs
        assert msgs == [*sent, event("stop", {"reason": "meeting_ended"})]
    bot = await meeting.get()
    assert (bot["status"], bot["stop_reason"], bot["error"]) == ("finished", "meeting_ended", None)


async def test_an_error_event_ends_the_stream_and_fails_the_bot(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """An error from the bot reaches every subscriber as its last event before close 1000,
    and the bot is failed with that message."""
    meeting = await new_meeting(api_a)
    subscribers = [await meeting.subscribe(read_only=i == 1) for i in range(3)]
    producer = await meeting.start()
    await produce(producer, "ts", ts("Before the crash.", 0.0, 1.0))
    assert await produce(producer, "error", {"message": "Kicked from the meeting"}) == 3
    assert await expect_close(producer) == 1000

    for ws in subscribers:
        msgs, code = await collect_until_closed(ws)
        assert code == 1000
        assert msgs == [
            START,
            event("ts", ts("Before the crash.", 0.0, 1.0)),
            event("error", {"message": "Kicked from the meeting"}),
        ]
    bot = await meeting.get()
    assert bot["status"] == "failed"
    assert bot["error"] == "Kicked from the meeting"
    assert bot["stop_reason"] is None
    assert bot["ended_at"] is not None
    assert [bot[u] for u in ("websocket_url", "websocket_read_only_url", "producer_url")] == [
        None,
        None,
        None,
    ]


# --------------------------------------------------------------------------- pings


async def ping_times(ws: ClientConnection, n: int) -> list[float]:
    """The monotonic times at which the next ``n`` messages, all pings, arrive."""
    times = []
    for _ in range(n):
        assert await recv_json(ws, 3.0) == PING
        times.append(time.monotonic())
    return times


async def test_subscribers_get_pings_on_their_own_schedule(
    fast_api: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Each subscriber gets a ping event one interval after it connected and every interval
    after that, on its own schedule, and the producer gets none."""
    meeting = await new_meeting(fast_api)
    producer = await meeting.start()
    first = await meeting.connect(meeting.bot["websocket_url"])
    first_at = time.monotonic()
    # A deliberate phase offset (not a wait for anything): a shared timer would then ping
    # the second subscriber well before one interval after it connected.
    await asyncio.sleep(PING_INTERVAL / 2)
    second = await meeting.connect(meeting.bot["websocket_read_only_url"])
    second_at = time.monotonic()

    first_pings, second_pings = await asyncio.gather(ping_times(first, 4), ping_times(second, 4))
    for connected_at, pings in ((first_at, first_pings), (second_at, second_pings)):
        assert 0.3 <= pings[0] - connected_at <= 1.0, pings[0] - connected_at
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert all(0.25 <= gap <= 1.0 for gap in gaps), gaps

    # Several intervals have passed: the next thing the producer gets is its ack.
    await send_json(producer, {"type": "ts", "data": ts("Ping check.", 1.0, 2.0), "ref": "p"})
    assert await recv_json(producer) == {"type": "ack", "seq": 2, "ref": "p"}


# --------------------------------------------------------------------------- stopping


async def test_stop_from_the_producer(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """The producer's stop reaches subscribers before close 1000, is acknowledged before the
    producer's close 1000, and finishes the bot with the reason it gave."""
    meeting = await new_meeting(api_a)
    rw, ro = await meeting.subscribe(), await meeting.subscribe(read_only=True)
    producer = await meeting.start()
    await send_json(producer, {"type": "stop", "data": {"reason": "meeting_ended"}, "ref": 9})
    msgs, code = await collect_until_closed(producer)
    assert (msgs, code) == ([{"type": "ack", "seq": 2, "ref": 9}], 1000)

    for ws in (rw, ro):
        msgs, code = await collect_until_closed(ws)
        assert code == 1000
        assert [m["type"] for m in msgs] == ["start", "stop"]
    bot = await meeting.get()
    assert (bot["status"], bot["stop_reason"]) == ("finished", "meeting_ended")
    assert bot["started_at"] is not None and bot["ended_at"] is not None


async def test_stop_action_with_a_producer_is_carried_out_by_the_producer(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """A read-write stop action reaches the connected producer, which may finish speaking;
    its own stop is the only one subscribers get."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    rw, ro = await meeting.subscribe(), await meeting.subscribe(read_only=True)
    await send_json(rw, {"action": "stop"})
    await expect_action(producer, {"action": "stop"})

    await produce(producer, "ts", ts("Goodbye.", 3.0, 4.0))
    await send_json(producer, {"type": "stop", "data": {}})
    msgs, code = await collect_until_closed(producer)
    assert (msgs, code) == ([{"type": "ack", "seq": 3}], 1000)

    for ws in (rw, ro):
        msgs, code = await collect_until_closed(ws)
        assert code == 1000
        assert [m["type"] for m in msgs] == ["ts", "stop"]
    assert (await meeting.get())["status"] == "finished"


async def test_rest_stop_waits_for_a_cooperating_producer(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """REST stop with a producer that stops promptly returns the finished bot well before
    the 10 s stop timeout."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    sub = await meeting.subscribe(read_only=True)
    began = time.monotonic()
    stopping = asyncio.create_task(meeting.rest_stop())
    await expect_action(producer, {"action": "stop"})
    await send_json(producer, {"type": "stop", "data": {"reason": "asked_to_leave"}})
    resp = await stopping
    assert time.monotonic() - began < 5.0
    assert resp.status == 200, resp.text
    assert (resp.body["status"], resp.body["stop_reason"]) == ("finished", "asked_to_leave")
    msgs, code = await collect_until_closed(sub)
    assert ([m["type"] for m in msgs], code) == (["stop"], 1000)


async def test_stop_action_without_a_producer_is_carried_out_by_the_server(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """With no producer connected, a read-write stop action makes the server store stop
    itself with the reason manually_stopped; subscribers get it and close 1000."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    await producer.close()
    rw, ro = await meeting.subscribe(), await meeting.subscribe(read_only=True)
    await send_json(rw, {"action": "stop"})
    for ws in (rw, ro):
        msgs, code = await collect_until_closed(ws)
        assert code == 1000
        assert msgs == [MANUAL_STOP]
    bot = await meeting.get()
    assert (bot["status"], bot["stop_reason"]) == ("finished", "manually_stopped")


async def test_rest_stop_times_out_on_a_producer_that_ignores_it(
    fast_api: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """REST stop against a producer that ignores the stop action stores stop after the stop
    timeout; the producer gets the action, then the stored stop event, then close 1000."""
    meeting = await new_meeting(fast_api)
    producer = await meeting.start()
    sub = await meeting.subscribe(read_only=True)
    began = time.monotonic()
    resp = await meeting.rest_stop()
    elapsed = time.monotonic() - began
    assert resp.status == 200, resp.text
    assert (resp.body["status"], resp.body["stop_reason"]) == ("finished", "manually_stopped")
    assert STOP_TIMEOUT * 0.8 <= elapsed <= STOP_TIMEOUT + 4.0, elapsed

    msgs, code = await collect_until_closed(producer)
    assert code == 1000
    assert msgs[0] == {"action": "stop"}, msgs
    assert [(m.get("type"), set(m)) for m in msgs[1:]] == [("stop", {"type", "data"})], msgs
    msgs, code = await events_until_closed(sub)
    assert (msgs, code) == ([MANUAL_STOP], 1000)


async def test_rest_stop_of_an_ended_bot_is_409_bot_ended(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Stopping a finished or failed bot through REST is refused with 409 bot_ended."""
    finished, failed = await new_meeting(api_a), await new_meeting(api_a)
    await produce(await finished.start(), "stop", {})
    await produce(await failed.start(), "error", {"message": "boom"})
    for meeting, status in ((finished, "finished"), (failed, "failed")):
        resp = await meeting.rest_stop()
        assert resp.status == 409, resp.text
        assert resp.body["error"] == "bot_ended", resp.body
        assert isinstance(resp.body.get("message"), str) and resp.body["message"]
        assert (await meeting.get())["status"] == status


async def test_a_bot_stopped_before_start_goes_from_joining_to_finished(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """A bot stopped through REST before it sent start is finished (manually_stopped, never
    started) and its subscribers get stop; a producer may also stop before start."""
    meeting = await new_meeting(api_a)
    assert (await meeting.get())["status"] == "joining"
    sub = await meeting.subscribe()
    resp = await meeting.rest_stop()
    assert resp.status == 200, resp.text
    assert (resp.body["status"], resp.body["stop_reason"]) == ("finished", "manually_stopped")
    assert resp.body["started_at"] is None and resp.body["ended_at"] is not None
    msgs, code = await collect_until_closed(sub)
    assert ([m["type"] for m in msgs], code) == (["stop"], 1000)

    other = await new_meeting(api_a)
    producer = await other.producer()
    assert await produce(producer, "stop", {"reason": "waiting_room_timeout"}) == 1
    bot = await other.get()
    assert (bot["status"], bot["stop_reason"], bot["started_at"]) == (
        "finished",
        "waiting_room_timeout",
        None,
    )


# --------------------------------------------------------------------------- limits


async def test_the_eleventh_subscriber_is_closed_1008_rate_limited(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """With ten subscribers on a bot the eleventh is accepted, then closed 1008 rate_limited,
    and the ten stay connected."""
    meeting = await new_meeting(api_a)
    subscribers = [await meeting.subscribe(read_only=i % 2 == 0) for i in range(10)]
    extra = await meeting.connect(meeting.bot["websocket_read_only_url"])
    assert await expect_close(extra) == 1008
    assert extra.close_reason == "rate_limited"

    producer = await meeting.start()
    await produce(producer, "participant-tracked", participant("p1"))
    for ws in subscribers:
        assert await recv_json(ws) == START
        assert await recv_json(ws) == event("participant-tracked", participant("p1"))


async def test_a_subscriber_over_the_message_rate_is_closed_1008(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """A subscriber sending 30 messages at once (over 10 per second) is closed 1008 with the
    reason rate_limited."""
    meeting = await new_meeting(api_a)
    ws = await meeting.subscribe(read_only=True)
    with contextlib.suppress(ConnectionClosed):
        for i in range(30):
            await send_json(ws, chat(f"spam {i}"))
    assert await expect_close(ws) == 1008
    assert ws.close_reason == "rate_limited"


async def test_action_frame_size_limit(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """A 4,096-byte action frame is accepted and performed; a 4,097-byte one closes 1009."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    rw = await meeting.subscribe()
    body = '{"action": "chat-message", "data": {"content": "' + "y" * 2000 + '"}}'
    await rw.send(body + " " * (4096 - len(body)))
    await expect_action(producer, chat("y" * 2000))
    await rw.send(body + " " * (4097 - len(body)))
    assert await expect_close(rw) == 1009


# --------------------------------------------------------------------------- the producer


async def test_producer_refuses_events_before_start_and_a_second_start(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Events before start and a second start get conflict (ref echoed) and the producer
    stays connected."""
    meeting = await new_meeting(api_a)
    producer = await meeting.producer()
    await send_json(producer, {"type": "ts", "data": ts("Too early.", 0.0, 1.0), "ref": 1})
    assert_error(await recv_json(producer), "conflict", ref=1)
    await send_json(producer, {"type": "chat-message", "data": {"username": "a", "content": "b"}})
    assert_error(await recv_json(producer), "conflict")
    assert (await meeting.get())["status"] == "joining"

    assert await produce(producer, "start") == 1
    await send_json(producer, {"type": "start", "data": {}, "ref": "again"})
    assert_error(await recv_json(producer), "conflict", ref="again")
    assert await produce(producer, "ts", ts("Now.", 0.0, 1.0)) == 2


async def test_producer_invalid_messages_keep_the_connection(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Unknown types, unknown fields, a ts ending before it starts, invalid JSON and binary
    frames get invalid_message (ref echoed when sent) and the connection stays open."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    cases: list[tuple[str | bytes, Any]] = [
        ('{"type": "dance", "data": {}, "ref": 1}', 1),
        ('{"type": "ts", "data": {}, "ref": "two"}', "two"),
        ('{"type": "start", "data": {}, "extra": true, "ref": 3}', 3),
        ('{"type": "participant-tracked", "data": {"participantId": "p", "x": 1}, "ref": 4}', 4),
        (
            '{"type": "ts", "data": {"transcript": "t", "start": 2.0, "end": 1.0, '
            '"speaker": 0, "speaker_name": null}, "ref": 5}',
            5,
        ),
        (
            '{"type": "ts", "data": {"transcript": "t", "start": 2.0, "end": 1.0, '
            '"speaker": 0, "speaker_name": null}}',
            None,
        ),
        ('{"type": "ts", "data": ', None),
        (b'{"type": "stop", "data": {}}', None),
    ]
    for frame, ref in cases:
        await producer.send(frame)
        assert_error(await recv_json(producer), "invalid_message", ref)
    assert await produce(producer, "ts", ts("Still connected.", 2.0, 2.0)) == 2
    assert (await meeting.get())["status"] == "recording"


async def test_producer_acks_come_in_order_with_their_ref(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Events sent back to back are acknowledged in order with consecutive seqs, each with
    its own ref and only when one was sent."""
    meeting = await new_meeting(api_a)
    producer = await meeting.start()
    refs: list[Any] = [10, "b", None, {"n": 3}, 0, None, "g"]
    for i, ref in enumerate(refs):
        msg: dict[str, Any] = {"type": "ts", "data": ts(f"Line {i}.", i, i + 0.5)}
        if ref is not None:
            msg["ref"] = ref
        await send_json(producer, msg)
    acks = [await recv_json(producer) for _ in refs]
    expected = [
        {"type": "ack", "seq": i + 2, **({} if ref is None else {"ref": ref})}
        for i, ref in enumerate(refs)
    ]
    assert acks == expected


async def test_a_second_producer_replaces_the_first(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """A new producer connection replaces the previous one, which gets replaced and close
    1008; actions then go to the new producer only."""
    meeting = await new_meeting(api_a)
    first = await meeting.start()
    second = await meeting.producer()
    msgs, code = await collect_until_closed(first)
    assert code == 1008
    assert len(msgs) == 1, msgs
    assert_error(msgs[0], "replaced")

    rw = await meeting.subscribe()
    await send_json(rw, chat("for the new producer"))
    await expect_action(second, chat("for the new producer"))
    assert await produce(second, "ts", ts("From the new one.", 0.0, 1.0)) == 2
    assert await recv_json(rw) == event("ts", ts("From the new one.", 0.0, 1.0))


async def test_connecting_to_an_ended_bot(
    api_a: Api, new_meeting: Callable[[Api], Awaitable[Meeting]]
) -> None:
    """Once a bot has ended a producer is refused with bot_ended and close 1000, and
    subscribers are closed 1000 at once with no message."""
    meeting = await new_meeting(api_a)
    await produce(await meeting.start(), "stop", {})

    producer = await meeting.connect(meeting.bot["producer_url"])
    msgs, code = await collect_until_closed(producer)
    assert code == 1000
    assert len(msgs) == 1, msgs
    assert_error(msgs[0], "bot_ended")
    for url in (meeting.bot["websocket_url"], meeting.bot["websocket_read_only_url"]):
        assert await expect_close(await meeting.connect(url)) == 1000


# --------------------------------------------------------------------------- durability


async def test_seqs_and_status_survive_a_restart(tmp_path: Path) -> None:
    """A bot's events get seqs 1..N; after a restart its status is kept and a new producer
    continues at N+1."""
    first = ServerProcess(data_dir=tmp_path / "data")
    first.start()
    try:
        tenant = first.create_tenant("durable-bots")
        async with aiohttp.ClientSession() as session:
            bot = await create_bot(Api(session, first, tenant.rw))
        producer = await open_url(bot["producer_url"])
        sent = [
            ("start", {}),
            ("participant-tracked", participant("p1", "John Doe")),
            ("ts", ts("Before the restart.", 0.0, 1.0, 0, "John Doe")),
        ]
        seqs = [await produce(producer, kind, data) for kind, data in sent]
        assert seqs == [1, 2, 3]
        first.terminate()
        await expect_close(producer, 15)
        assert await asyncio.to_thread(first.wait, 20) == 0
    finally:
        first.kill()

    second = ServerProcess(data_dir=tmp_path / "data")
    second.start()
    try:
        async with aiohttp.ClientSession() as session:
            meeting = Meeting(Api(session, second, tenant.rw), {"id": bot["id"]})
            meeting.bot = await meeting.get()
            assert meeting.bot["status"] == "recording"
            assert meeting.bot["started_at"] is not None
            producer = await meeting.producer()
            await send_json(producer, {"type": "start", "data": {}})
            assert_error(await recv_json(producer), "conflict")
            assert await produce(producer, "ts", ts("After the restart.", 2.0, 3.0)) == 4
            assert await produce(producer, "stop", {"reason": "meeting_ended"}) == 5
            bot = await meeting.get()
            assert (bot["status"], bot["stop_reason"]) == ("finished", "meeting_ended")
            for ws in meeting.sockets:
                await ws.close()
    finally:
        second.stop()
        second.kill()
