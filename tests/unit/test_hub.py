"""The hub turns whatever the broker delivers into a gap-free, duplicate-free sequence."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import pytest

from scribeline import history
from scribeline.broker import pack
from scribeline.broker.memory import MemoryBroker
from scribeline.errors import RateLimited
from scribeline.events import EventType, NewEvent, Position, StoredEvent
from scribeline.hub import CaughtUp, Hub
from scribeline.protocols.frames import text_frame
from scribeline.recovery import SegmentHead, segment_heads_of, start_after
from scribeline.storage.base import EventLog

STREAM = "call:1"


def _event(seq: int, closes: bool = False) -> StoredEvent:
    return StoredEvent(STREAM, seq, EventType.TRANSCRIPT, 0, {"n": seq}, closes)


class ListLog(EventLog):
    """An in-memory event log holding events 1..head."""

    def __init__(self, head: int) -> None:
        self.events = [_event(s) for s in range(1, head + 1)]
        self.reads: list[tuple[int, int | None]] = []

    async def append(self, stream: str, events: Sequence[NewEvent]) -> list[StoredEvent]:
        raise NotImplementedError

    async def read(
        self, stream: str, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        self.reads.append((after, limit))
        out = [e for e in self.events if e.seq > after]
        return out if limit is None else out[:limit]

    async def head(self, stream: str) -> Position:
        return Position(len(self.events), "e")

    async def segment_heads(self, stream: str, segments: Collection[str]) -> dict[str, SegmentHead]:
        heads = segment_heads_of(self.events)
        return {segment: head for segment, head in heads.items() if segment in segments}

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RecordingConnection:
    """Stands in for Connection: the same offer/go_live rules, recording seqs sent."""

    def __init__(self) -> None:
        self.joining = False
        self.last_seq = 0
        self.pending: list[tuple[int, bytes, bool]] = []
        self.sent: list[int] = []
        self.closed_with: int | None = None
        self.closing = False
        self.history: list[bytes] = []

    def hold(self) -> None:
        self.joining = True

    def offer(self, seq: int, frame: bytes, closes: bool) -> None:
        if self.joining:
            self.pending.append((seq, frame, closes))
            return
        if seq > self.last_seq:
            self.last_seq = seq
            self.sent.append(seq)
            if closes:
                self.close_soon(1000)

    async def write_paced(self, frame: bytes) -> None:
        self.history.append(frame)

    def go_live(self, covered: int) -> None:
        self.last_seq = max(self.last_seq, covered)
        pending, self.pending = self.pending, []
        self.joining = False
        for item in pending:
            self.offer(*item)

    def close_soon(self, code: int) -> None:
        self.closed_with = code


async def _hub(head: int) -> tuple[Hub, ListLog, MemoryBroker]:
    log = ListLog(head)
    broker = MemoryBroker()
    hub = Hub(broker, log, lambda event, meta: b"{}")
    await broker.start(hub.deliver)
    return hub, log, broker


async def _live(hub: Hub, conn: RecordingConnection) -> None:
    await hub.attach(STREAM, conn, "f", lambda e: b"{}")  # type: ignore[arg-type]
    conn.go_live(0)


async def test_in_order_events_pass_straight_through() -> None:
    """Consecutive seqs are delivered in order without touching storage."""
    hub, log, broker = await _hub(head=3)
    conn = RecordingConnection()
    await _live(hub, conn)
    conn.last_seq = 3  # history covered 1..3
    for seq in (4, 5, 6):
        log.events.append(_event(seq))
        await broker.publish(STREAM, pack(_event(seq)))
    assert conn.sent == [4, 5, 6]
    assert log.reads == []


async def test_a_lost_broker_message_is_read_from_storage() -> None:
    """When seq 5 never arrives, 6 triggers a read of 5 and both go out in order."""
    hub, log, broker = await _hub(head=4)
    conn = RecordingConnection()
    await _live(hub, conn)
    conn.last_seq = 4
    log.events += [_event(5), _event(6)]
    await broker.publish(STREAM, pack(_event(6)))
    assert conn.sent == []
    for _ in range(10):
        if conn.sent:
            break
        await asyncio.sleep(0)
    assert conn.sent == [5, 6]
    assert log.reads == [(4, 1)]


async def test_duplicates_and_reordering_are_absorbed() -> None:
    """A repeated or late seq is dropped; a reordered pair is delivered in order."""
    hub, log, broker = await _hub(head=1)
    conn = RecordingConnection()
    await _live(hub, conn)
    conn.last_seq = 1
    log.events += [_event(2), _event(3)]
    await broker.publish(STREAM, pack(_event(3)))
    await broker.publish(STREAM, pack(_event(2)))
    await broker.publish(STREAM, pack(_event(2)))
    await broker.publish(STREAM, pack(_event(3)))
    for _ in range(10):
        await asyncio.sleep(0)
    assert conn.sent == [2, 3]


async def test_events_during_join_are_held_then_merged_without_duplicates() -> None:
    """A joining connection holds live events; go_live sends only those after its history."""
    hub, log, broker = await _hub(head=2)
    conn = RecordingConnection()
    await hub.attach(STREAM, conn, "f", lambda e: b"{}")  # type: ignore[arg-type]
    assert conn.joining
    log.events += [_event(3), _event(4)]
    await broker.publish(STREAM, pack(_event(3)))
    await broker.publish(STREAM, pack(_event(4)))
    assert conn.sent == []
    conn.sent = [1, 2, 3]  # history read after attach reached seq 3
    conn.go_live(3)
    assert conn.sent == [1, 2, 3, 4]


async def test_a_resumed_join_never_resends_an_event_the_broker_delivers_late() -> None:
    """A client resuming with since=N whose history after N is empty does not get N
    again when the broker delivers N only after the join (any broker that is not
    in-process): the join's resume point counts as covered."""
    hub, log, broker = await _hub(head=4)
    other = RecordingConnection()
    await _live(hub, other)  # the stream's topic is open and has passed seq 4
    log.events.append(_event(5))  # stored; the broker has not delivered it yet
    conn = RecordingConnection()
    await hub.attach(STREAM, conn, "f", lambda e: b"{}")  # type: ignore[arg-type]
    position = await log.head(STREAM)
    start = start_after(5, None, position)
    covered, ended = await history.replay(
        log,
        conn,  # type: ignore[arg-type]
        STREAM,
        start,
        position.seq,
        lambda e: b"{}",
    )
    assert (start, covered, ended, conn.history) == (5, 5, False, [])
    conn.go_live(covered)
    await broker.publish(STREAM, pack(_event(5)))  # the late delivery
    assert other.sent == [5]
    assert conn.sent == []


async def test_join_sends_held_live_events_after_what_the_catch_up_covered() -> None:
    """Join attaches before reading the head, so events published during the
    catch-up are held, and only those after its covered seq go out, once."""
    hub, log, broker = await _hub(head=2)
    conn = RecordingConnection()
    seen: list[Position] = []

    async def catch_up(position: Position) -> CaughtUp:
        seen.append(position)
        assert conn.joining
        for seq in (3, 4):  # appended while history is being sent
            log.events.append(_event(seq))
            await broker.publish(STREAM, pack(_event(seq)))
        return CaughtUp(3)  # history reached 3

    joined = await hub.join(STREAM, conn, "f", lambda e: b"{}", catch_up)  # type: ignore[arg-type]
    assert joined and seen == [Position(2, "e")]
    assert conn.sent == [4] and not conn.joining and conn.closed_with is None


async def test_a_join_of_an_ended_stream_closes_after_going_live() -> None:
    """A catch-up that reports the stream ended closes the connection normally,
    after the held events past the covered seq have gone out."""
    hub, log, broker = await _hub(head=1)
    conn = RecordingConnection()

    async def catch_up(position: Position) -> CaughtUp:
        log.events.append(_event(2, closes=True))
        await broker.publish(STREAM, pack(_event(2, closes=True)))
        return CaughtUp(position.seq, ended=True)

    assert await hub.join(STREAM, conn, "f", lambda e: b"{}", catch_up)  # type: ignore[arg-type]
    assert conn.sent == [2] and conn.closed_with == 1000


async def test_a_declined_or_failed_join_leaves_nothing_attached() -> None:
    """A catch-up that declines (None) or raises detaches the connection: the topic
    is released and later events do not reach it; the error reaches the caller."""
    hub, _, broker = await _hub(head=0)
    conn = RecordingConnection()

    async def decline(position: Position) -> CaughtUp | None:
        return None

    async def fail(position: Position) -> CaughtUp | None:
        raise RuntimeError("storage went away")

    assert not await hub.join(STREAM, conn, "f", lambda e: b"{}", decline)  # type: ignore[arg-type]
    assert hub.topics == 0
    with pytest.raises(RuntimeError, match="storage went away"):
        await hub.join(STREAM, conn, "f", lambda e: b"{}", fail)  # type: ignore[arg-type]
    assert hub.topics == 0
    conn.joining = False
    await broker.publish(STREAM, pack(_event(1)))
    assert conn.sent == []


async def test_join_snapshot_catches_up_from_the_snapshot_read_after_attaching() -> None:
    """With a snapshot reader, the catch-up gets what it read (a head with the state
    read alongside it), and it is read only after the connection holds live events."""
    hub, _, _ = await _hub(head=0)
    conn = RecordingConnection()
    order: list[str] = []

    async def snapshot() -> tuple[Position, str]:
        order.append("snapshot" if conn.joining else "too early")
        return Position(7, "e"), "counters"

    async def catch_up(read: tuple[Position, str]) -> CaughtUp:
        order.append(read[1])
        return CaughtUp(read[0].seq)

    assert await hub.join_snapshot(STREAM, conn, "f", lambda e: b"{}", snapshot, catch_up)  # type: ignore[arg-type]
    assert order == ["snapshot", "counters"] and conn.last_seq == 7


async def test_closing_event_closes_subscribers_normally() -> None:
    """An event that ends the stream is delivered, then the connection closes with 1000."""
    hub, log, broker = await _hub(head=0)
    conn = RecordingConnection()
    await _live(hub, conn)
    log.events.append(_event(1, closes=True))
    await broker.publish(STREAM, pack(_event(1, closes=True)))
    assert conn.sent == [1] and conn.closed_with == 1000


async def test_one_subscription_per_stream_released_by_the_last_subscriber() -> None:
    """Many connections share one topic; the last detach unsubscribes."""
    hub, _, broker = await _hub(head=0)
    conns = [RecordingConnection() for _ in range(3)]
    for c in conns:
        await _live(hub, c)
    assert hub.topics == 1
    for c in conns[:2]:
        await hub.detach(STREAM, c)  # type: ignore[arg-type]
    assert hub.topics == 1
    await hub.detach(STREAM, conns[2])  # type: ignore[arg-type]
    assert hub.topics == 0
    await broker.publish(STREAM, pack(_event(1)))
    assert all(c.sent == [] for c in conns)


@pytest.mark.parametrize("subscribers", [1, 50])
async def test_each_event_is_encoded_once_per_format(subscribers: int) -> None:
    """Fan-out calls the encoder once per event, whatever the number of subscribers."""
    hub, log, broker = await _hub(head=0)
    calls: list[int] = []

    def encoder(event: StoredEvent) -> bytes:
        calls.append(event.seq)
        return b"{}"

    for _ in range(subscribers):
        conn = RecordingConnection()
        await hub.attach(STREAM, conn, "f", encoder)  # type: ignore[arg-type]
        conn.go_live(0)
    log.events.append(_event(1))
    await broker.publish(STREAM, pack(_event(1)))
    assert calls == [1]


class WritingConnection(RecordingConnection):
    """A firehose subscriber: records the frames written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []

    def write(self, frame: bytes) -> None:
        self.frames.append(frame)


async def test_the_firehose_is_one_subscription_per_organization() -> None:
    """An org subscriber sees events of 100 calls through one broker subscription;
    each event is encoded once, and only for the subscribers whose filters match."""
    encoded: list[int] = []

    def encode(event: StoredEvent, meta: dict[str, object]) -> bytes:
        encoded.append(event.seq)
        return b"{}"

    log = ListLog(0)
    broker = MemoryBroker()
    hub = Hub(broker, log, encode)
    await broker.start(hub.deliver)
    everything, one_call, statuses = WritingConnection(), WritingConnection(), WritingConnection()
    await hub.subscribe_firehose("org:1", everything, "transcription", "*")  # type: ignore[arg-type]
    await hub.subscribe_firehose("org:1", one_call, "transcription", "CA7")  # type: ignore[arg-type]
    await hub.subscribe_firehose("org:1", one_call, "transcription", "*")  # type: ignore[arg-type]
    await hub.subscribe_firehose("org:1", statuses, "call_status", "*")  # type: ignore[arg-type]
    for n in range(100):
        event = StoredEvent(f"call:{n}", 1, EventType.TRANSCRIPT, 0, {})
        await broker.publish("org:1", pack(event, {"call_sid": f"CA{n}", "assistant_id": 1}))
    await broker.publish("org:2", pack(_event(1), {"call_sid": "CA7"}))  # another org
    assert hub.topics == 1
    assert len(everything.frames) == 100 and len(one_call.frames) == 100  # once each, not twice
    assert statuses.frames == []
    assert len(encoded) == 100  # once per event, not once per subscriber
    await hub.unsubscribe_firehose("org:1", one_call, "transcription", "*")  # type: ignore[arg-type]
    await broker.publish("org:1", pack(_event(2), {"call_sid": "CA7", "assistant_id": 1}))
    await broker.publish("org:1", pack(_event(3), {"call_sid": "CA8", "assistant_id": 1}))
    assert len(one_call.frames) == 101 and len(everything.frames) == 102
    for conn in (everything, one_call, statuses):
        await hub.detach_firehose("org:1", conn)  # type: ignore[arg-type]
    assert hub.topics == 0


async def test_firehose_subscriptions_are_bounded_per_connection_and_organization() -> None:
    """Past either bound a subscription is refused with rate_limited; a slot freed by
    an unsubscribe or a departing connection can be taken again."""
    hub = Hub(
        MemoryBroker(),
        ListLog(0),
        lambda event, meta: b"{}",
        subscriptions_per_connection=3,
        subscriptions_per_organization=5,
    )
    first, second = WritingConnection(), WritingConnection()
    for sid in ("CA1", "CA2", "CA3"):
        await hub.subscribe_firehose("org:1", first, "transcription", sid)  # type: ignore[arg-type]
    with pytest.raises(RateLimited, match="per connection"):
        await hub.subscribe_firehose("org:1", first, "transcription", "CA4")  # type: ignore[arg-type]
    await hub.subscribe_firehose("org:1", first, "transcription", "CA1")  # type: ignore[arg-type]
    for sid in ("CA5", "CA6"):
        await hub.subscribe_firehose("org:1", second, "call_status", sid)  # type: ignore[arg-type]
    with pytest.raises(RateLimited, match="per organization"):
        await hub.subscribe_firehose("org:1", second, "call_status", "CA7")  # type: ignore[arg-type]
    await hub.subscribe_firehose("org:2", second, "call_status", "CA7")  # type: ignore[arg-type]
    await hub.unsubscribe_firehose("org:1", first, "transcription", "CA1")  # type: ignore[arg-type]
    await hub.subscribe_firehose("org:1", second, "call_status", "CA7")  # type: ignore[arg-type]
    third = WritingConnection()
    with pytest.raises(RateLimited, match="per organization"):
        await hub.subscribe_firehose("org:1", third, "call_status", "*")  # type: ignore[arg-type]
    await hub.detach_firehose("org:1", first)  # type: ignore[arg-type]
    for topic in ("call_status", "transcription"):
        await hub.subscribe_firehose("org:1", third, topic, "*")  # type: ignore[arg-type]


async def test_a_relay_passes_messages_on_in_order_through_one_subscription() -> None:
    """A bot's actions channel: each message reaches every follower as one text frame,
    in publish order, through one broker subscription that ends with the last follower."""
    broker = MemoryBroker()
    hub = Hub(broker, ListLog(0), lambda event, meta: None)
    await broker.start(hub.deliver)
    first, second = WritingConnection(), WritingConnection()
    await hub.attach_relay("bot-actions:1", first)  # type: ignore[arg-type]
    await hub.attach_relay("bot-actions:1", second)  # type: ignore[arg-type]
    for n in range(3):
        await broker.publish("bot-actions:1", b'{"n":%d}' % n)
    await broker.publish("bot-actions:2", b'{"n":9}')  # another bot's
    expected = [text_frame(b'{"n":%d}' % n) for n in range(3)]
    assert first.frames == expected and second.frames == expected
    assert hub.topics == 1
    await hub.detach_relay("bot-actions:1", first)  # type: ignore[arg-type]
    await broker.publish("bot-actions:1", b'{"n":3}')
    assert len(first.frames) == 3 and len(second.frames) == 4
    await hub.detach_relay("bot-actions:1", second)  # type: ignore[arg-type]
    assert hub.topics == 0
