"""The hub's position per stream against real SQLite storage, with a broker the
test drives by hand (it loses, repeats and reorders messages on request)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from scribeline.broker import Broker, Deliver, OnGap, pack
from scribeline.broker.memory import MemoryBroker
from scribeline.errors import StorageUnavailable
from scribeline.events import EventType, NewEvent, Position, StoredEvent
from scribeline.hub import CaughtUp, Hub
from scribeline.storage import Storage, open_storage
from tests.unit.test_hub import ListLog, WritingConnection

STREAM = "call:1"
ORG = "org:1"
META = {"call_sid": "CA1", "assistant_id": 1}


class HandBroker(Broker):
    """Records subscriptions; delivers only what the test hands it, when it says."""

    def __init__(self) -> None:
        self.channels: set[str] = set()
        self.deliver: Deliver | None = None
        self.on_gap: OnGap | None = None

    async def start(self, deliver: Deliver, on_gap: OnGap | None = None) -> None:
        self.deliver, self.on_gap = deliver, on_gap

    async def publish(self, channel: str, payload: bytes) -> None:
        return None  # lost, unless the test hands it over

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def hand(self, channel: str, *events: StoredEvent) -> None:
        assert self.deliver is not None and channel in self.channels
        for event in events:
            self.deliver(channel, pack(event, META))

    def gap(self) -> None:
        assert self.on_gap is not None
        self.on_gap()


class Subscriber:
    """Stands in for a Connection: the same hold/offer/go_live rules, recording seqs.
    ``changed`` (one per test) is set whenever any subscriber gets or loses anything."""

    changed: asyncio.Event

    def __init__(self) -> None:
        self.joining = False
        self.last_seq = 0
        self.pending: list[tuple[int, bytes, bool]] = []
        self.seqs: list[int] = []
        self.frames: list[bytes] = []
        self.closed_with: int | None = None

    def hold(self) -> None:
        self.joining = True

    def offer(self, seq: int, frame: bytes, closes: bool) -> None:
        self.changed.set()
        if self.joining:
            self.pending.append((seq, frame, closes))
        elif seq > self.last_seq:
            self.last_seq = seq
            self.seqs.append(seq)
            if closes:
                self.close_soon(1000)

    def go_live(self, covered: int) -> None:
        self.last_seq = max(self.last_seq, covered)
        pending, self.pending = self.pending, []
        self.joining = False
        for item in pending:
            self.offer(*item)

    def close_soon(self, code: int, reason: str = "") -> None:
        self.changed.set()
        if self.closed_with is None:
            self.closed_with = code

    def write(self, frame: bytes) -> None:
        self.changed.set()
        self.frames.append(frame)


class Counted:
    """Counts storage reads and heads queries (wrapping the real methods)."""

    def __init__(self, storage: Storage) -> None:
        self.reads: list[tuple[str, int, int | None]] = []
        self.heads = 0
        read, heads = storage.read, storage.heads

        async def counted_read(
            stream: str, after: int = 0, limit: int | None = None
        ) -> list[StoredEvent]:
            self.reads.append((stream, after, limit))
            return await read(stream, after, limit)

        async def counted_heads(streams: Any) -> dict[str, Position]:
            self.heads += 1
            return await heads(streams)

        storage.read = counted_read  # type: ignore[method-assign]
        storage.heads = counted_heads  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
async def changes() -> None:
    Subscriber.changed = asyncio.Event()


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = await open_storage("", tmp_path)
    try:
        yield store
    finally:
        await store.close()


async def _hub(storage: Storage, **options: float) -> tuple[Hub, HandBroker]:
    broker = HandBroker()
    hub = Hub(broker, storage, lambda event, meta: b"%d" % event.seq, **options)  # type: ignore[arg-type]
    await broker.start(hub.deliver, hub.on_gap)
    return hub, broker


async def _join(hub: Hub, stream: str = STREAM) -> Subscriber:
    """A subscriber that joined with history up to the head (sent by the test's leave)."""
    conn = Subscriber()

    async def catch_up(position: Position) -> CaughtUp:
        return CaughtUp(position.seq)

    await hub.join(stream, conn, "f", lambda e: b"{}", catch_up)  # type: ignore[arg-type]
    return conn


async def _append(storage: Storage, count: int, stream: str = STREAM) -> list[StoredEvent]:
    return await storage.append(
        stream, [NewEvent(EventType.TRANSCRIPT, {"n": n}) for n in range(count)]
    )


async def _created(storage: Storage, stream: str = STREAM) -> None:
    """The stream's first event (a call is created with its first status)."""
    await storage.append(stream, [NewEvent(EventType.CALL_STATUS, {"status": "queued"})])


async def _until(done: Callable[[], bool]) -> None:
    """Until ``done()`` holds, checked whenever a subscriber's state changes."""
    async with asyncio.timeout(5):
        while not done():
            Subscriber.changed.clear()
            await Subscriber.changed.wait()


async def test_a_gap_is_read_from_storage_once_per_node(storage: Storage) -> None:
    """Twenty connections on one stream, two broker messages lost: one storage read
    repairs all of them, each gets every event once and in order."""
    hub, broker = await _hub(storage)
    await _created(storage)
    conns = [await _join(hub) for _ in range(20)]
    counted = Counted(storage)
    events = await _append(storage, 5)  # seqs 2..6
    broker.hand(STREAM, events[0], events[1], events[4])
    await _until(lambda: all(c.seqs == [2, 3, 4, 5, 6] for c in conns))
    assert counted.reads == [(STREAM, 3, 2)]
    await hub.close()


async def test_a_gap_waits_for_reordered_messages_before_reading(storage: Storage) -> None:
    """Seq 3 before 2 (two nodes publishing): nothing is read when 2 follows within the
    reorder wait; a gap that stays open is read only after the wait."""
    hub, broker = await _hub(storage, reorder_wait=0.2)
    await _created(storage)
    conn = await _join(hub)
    counted = Counted(storage)
    events = await _append(storage, 6)  # seqs 2..7
    broker.hand(STREAM, events[0], events[2])
    assert conn.seqs == [2]
    broker.hand(STREAM, events[1])
    assert conn.seqs == [2, 3, 4]

    loop = asyncio.get_running_loop()
    began = loop.time()
    broker.hand(STREAM, events[5])  # 5 and 6 never come
    await _until(lambda: conn.seqs == [2, 3, 4, 5, 6, 7])
    assert loop.time() - began >= 0.2
    assert counted.reads == [(STREAM, 4, 2)]
    await hub.close()


async def test_stale_and_repeated_messages_are_dropped(storage: Storage) -> None:
    """A seq at or below the position (a repeat, or one already repaired) is dropped."""
    hub, broker = await _hub(storage)
    conn = await _join(hub)
    events = await _append(storage, 3)
    broker.hand(STREAM, events[0], events[2])
    await _until(lambda: conn.seqs == [1, 2, 3])
    broker.hand(STREAM, events[1], events[0], events[2], events[2])  # late and repeated
    await asyncio.sleep(0)
    assert conn.seqs == [1, 2, 3]
    await hub.close()


async def test_a_lost_last_event_is_found_by_the_check_after_a_gap_report(
    storage: Storage,
) -> None:
    """The terminal event is lost and nothing follows it: the check the broker's gap
    report triggers finds it with one heads query, delivers it and the connection
    closes normally."""
    hub, broker = await _hub(storage)
    for stream in (STREAM, "call:2"):
        await _created(storage, stream)
    conn = await _join(hub)
    other = await _join(hub, "call:2")
    counted = Counted(storage)
    (second,) = await _append(storage, 1)
    broker.hand(STREAM, second)
    await storage.append(STREAM, [NewEvent(EventType.CALL_STATUS, {"status": "completed"}, True)])
    await _append(storage, 3, "call:2")
    broker.gap()
    await _until(lambda: conn.closed_with == 1000 and other.seqs == [2, 3, 4])
    assert conn.seqs == [2, 3]
    assert counted.heads == 1
    await hub.close()


async def test_the_periodic_check_finds_a_lost_last_event(storage: Storage) -> None:
    """With no gap report at all, the periodic position check repairs a lost tail."""
    hub, _ = await _hub(storage, position_check_interval=0.05)
    hub.start()
    conn = await _join(hub)
    await _append(storage, 2)
    await _until(lambda: conn.seqs == [1, 2])
    assert hub.counters()["repairs"] >= 1
    await hub.close()


async def test_a_late_message_of_another_epoch_is_ignored(storage: Storage) -> None:
    """A message whose epoch storage does not confirm (a late one from before a reset)
    is dropped and the subscribers stay, even on a stream joined before it had any
    event (its epoch is learnt from storage, not from the first message)."""
    hub, broker = await _hub(storage)
    conn = await _join(hub)
    (event,) = await _append(storage, 1)
    stray = StoredEvent(STREAM, 2, EventType.TRANSCRIPT, 0, {}, False, "not-the-epoch")
    broker.hand(STREAM, stray)
    broker.hand(STREAM, event)
    await _until(lambda: conn.seqs == [1])
    await hub.check_positions()
    (second,) = await _append(storage, 1)
    broker.hand(STREAM, StoredEvent(STREAM, 2, EventType.TRANSCRIPT, 0, {}, False, "old"))
    broker.hand(STREAM, second)
    await _until(lambda: conn.seqs == [1, 2])
    await hub.check_positions()
    assert conn.closed_with is None
    await hub.close()


async def test_a_changed_epoch_closes_subscribers_to_start_again(
    storage: Storage, tmp_path: Path
) -> None:
    """The stream's storage is reset (new epoch, seqs from 1): its subscribers are
    closed with 1013 so they rejoin and replay; one that joins later follows the
    new epoch without a gap."""
    hub, broker = await _hub(storage)
    conn = await _join(hub)
    old = await _append(storage, 3)
    broker.hand(STREAM, *old)
    await _until(lambda: conn.seqs == [1, 2, 3])

    with sqlite3.connect(tmp_path / "scribeline.db") as db:  # the reset, behind the hub's back
        db.execute("DELETE FROM events WHERE stream = ?", (STREAM,))
        db.execute("UPDATE streams SET head = 0, epoch = 'reset' WHERE stream = ?", (STREAM,))
    later = await _join(hub)  # joined the reset stream, while the node still follows 1..3
    new = await _append(storage, 2)
    assert new[0].epoch == "reset"
    broker.hand(STREAM, new[0])
    await _until(lambda: conn.closed_with == 1013)
    assert conn.seqs == [1, 2, 3]
    broker.hand(STREAM, new[1])
    await _until(lambda: later.seqs == [1, 2] or later.closed_with is not None)
    assert later.closed_with == 1013  # it had attached before the change was seen
    rejoined = await _join(hub)
    newer = await _append(storage, 1)
    broker.hand(STREAM, *newer)
    await _until(lambda: rejoined.seqs == [3])
    assert rejoined.closed_with is None
    await hub.close()


async def test_the_firehose_repairs_a_seen_stream_with_its_metadata(storage: Storage) -> None:
    """On the organization channel a lost event of a stream already seen is read from
    storage and rendered with the stream's routing metadata, in order; a lost tail
    is found by the position check."""
    hub, broker = await _hub(storage)
    conn = Subscriber()
    await hub.subscribe_firehose(ORG, conn, "transcription", "CA1")  # type: ignore[arg-type]
    events = await _append(storage, 5)
    broker.hand(ORG, events[0], events[2])
    await _until(lambda: conn.frames == [b"\x81\x011", b"\x81\x012", b"\x81\x013"])
    await hub.check_positions()
    await _until(lambda: len(conn.frames) == 5)
    assert [frame[2:] for frame in conn.frames] == [b"1", b"2", b"3", b"4", b"5"]
    await hub.close()


async def test_storage_that_lacks_announced_events_closes_subscribers(storage: Storage) -> None:
    """When storage cannot supply a range the broker skipped (it never should), the
    stream's subscribers are closed with 1013 rather than left waiting."""
    hub, broker = await _hub(storage)
    conn = await _join(hub)
    phantom = StoredEvent(STREAM, 3, EventType.TRANSCRIPT, 0, {})
    broker.hand(STREAM, phantom)
    await _until(lambda: conn.closed_with == 1013)
    await hub.close()


async def test_quick_position_checks_do_not_forget_an_idle_firehose_stream(
    storage: Storage,
) -> None:
    """Position checks seconds apart (one after each failed reconnect while the
    broker is down) do not make the firehose forget an idle stream: idleness is
    time, so a tail lost meanwhile is still repaired."""
    hub, broker = await _hub(storage)
    conn = Subscriber()
    await hub.subscribe_firehose(ORG, conn, "transcription", "CA1")  # type: ignore[arg-type]
    broker.hand(ORG, *await _append(storage, 3))
    await _until(lambda: len(conn.frames) == 3)
    for _ in range(6):
        await hub.check_positions()
    await _append(storage, 1)  # its publish is lost
    await hub.check_positions()
    await _until(lambda: len(conn.frames) == 4)
    assert [frame[2:] for frame in conn.frames] == [b"1", b"2", b"3", b"4"]
    await hub.close()


async def test_a_forgotten_firehose_stream_shows_nothing_twice_and_resumes(
    storage: Storage,
) -> None:
    """Once the firehose forgets an idle stream, messages it had already emitted
    (a publisher resending after an outage) are dropped, and the stream's next
    message resumes where it was: the event lost in between is read from storage."""
    hub, broker = await _hub(storage, firehose_idle=0.0)
    conn = Subscriber()
    await hub.subscribe_firehose(ORG, conn, "transcription", "CA1")  # type: ignore[arg-type]
    events = await _append(storage, 3)
    broker.hand(ORG, *events)
    await _until(lambda: len(conn.frames) == 3)
    await hub.check_positions()  # idle: forgotten
    events += await _append(storage, 2)
    broker.hand(ORG, events[1], events[2])  # resent
    broker.hand(ORG, events[4])  # seq 4 was lost
    await _until(lambda: len(conn.frames) >= 5)
    assert [frame[2:] for frame in conn.frames] == [b"1", b"2", b"3", b"4", b"5"]
    await hub.close()


async def test_a_failed_first_join_leaves_no_subscription_behind(storage: Storage) -> None:
    """When the head read of a stream's first join fails (storage unavailable), the
    join raises and undoes its broker subscription; a later join subscribes again
    and follows the stream."""
    hub, broker = await _hub(storage)
    head = storage.head

    async def unavailable(stream: str) -> Position:
        raise StorageUnavailable("storage is unavailable")

    storage.head = unavailable  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailable):
        await _join(hub)
    assert broker.channels == set() and hub.topics == 0

    storage.head = head  # type: ignore[method-assign]
    conn = await _join(hub)
    assert broker.channels == {STREAM}
    broker.hand(STREAM, *await _append(storage, 1))
    await _until(lambda: conn.seqs == [1])
    await hub.close()


async def test_a_repeated_org_event_is_written_once() -> None:
    """The broker delivers seq 1, 2, then 1 and 2 again (a publish retried after an
    ambiguous timeout): an event-stream subscriber gets each once."""
    broker = MemoryBroker()
    hub = Hub(broker, ListLog(0), lambda e, m: b"{}")
    await broker.start(hub.deliver)
    conn = WritingConnection()
    await hub.subscribe_firehose("org:1", conn, "transcription", "*")  # type: ignore[arg-type]
    meta = {"call_sid": "CA1", "assistant_id": 1}
    events = [StoredEvent("call:1", s, EventType.TRANSCRIPT, 0, {}) for s in (1, 2)]
    for event in events + events:
        await broker.publish("org:1", pack(event, meta))
    assert len(conn.frames) == 2
    await hub.close()
