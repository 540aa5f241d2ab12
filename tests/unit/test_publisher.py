"""Publishing after commit: an append never waits on a networked broker, a broker
outage neither fails the append nor loses the publish for good, and the
in-process broker still delivers before the append returns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from scribeline.broker import Broker, BrokerUnavailable, Deliver, OnGap, open_broker, unpack
from scribeline.config import Settings
from scribeline.events import EventType, StoredEvent
from scribeline.ingest import publish
from scribeline.ingest.publish import Publisher
from scribeline.server import _close_services, build_services


class FlakyBroker(Broker):
    """Refuses publishes while ``down``; records what it took, in order. While
    ``hanging`` is set, a publish waits until it is cleared (a blackholed Redis)."""

    def __init__(self) -> None:
        self.down = True
        self.taken: list[tuple[str, bytes]] = []
        self.round_trips = 0
        self.attempts = 0
        self.changed = asyncio.Event()
        self.answering = asyncio.Event()
        self.answering.set()

    async def start(self, deliver: Deliver, on_gap: OnGap | None = None) -> None:
        return None

    async def publish(self, channel: str, payload: bytes) -> None:
        await self.publish_many([(channel, payload)])

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.attempts += 1
        self.changed.set()
        await self.answering.wait()
        if self.down:
            raise BrokerUnavailable("Redis is unavailable")
        self.round_trips += 1
        self.taken.extend(messages)
        self.changed.set()

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def until(self, done: Callable[[], bool]) -> None:
        """Until ``done()`` holds, checked after every publish attempt."""
        async with asyncio.timeout(5):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    def seqs(self, channel: str = "call:1") -> list[int]:
        return [unpack(p).seq for c, p in self.taken if c == channel]


def _event(seq: int) -> StoredEvent:
    return StoredEvent("call:1", seq, EventType.TRANSCRIPT, 0, {}, False, "e")


async def test_appends_that_come_together_share_one_round_trip() -> None:
    """Each event goes to its stream's and its organization's channel; what is
    published together reaches the broker in one call, in publish order."""
    broker = FlakyBroker()
    broker.down = False
    publisher = Publisher(broker)
    await publisher.publish(7, [_event(1), _event(2)], {"call_sid": "CA1"})
    await publisher.publish(7, [_event(3)], {"call_sid": "CA1"})
    await broker.until(lambda: len(broker.taken) == 6)
    assert broker.round_trips == 1
    assert [(c, unpack(p).seq) for c, p in broker.taken] == [
        ("call:1", 1),
        ("org:7", 1),
        ("call:1", 2),
        ("org:7", 2),
        ("call:1", 3),
        ("org:7", 3),
    ]
    await publisher.close()


async def test_an_append_never_waits_for_a_broker_that_does_not_answer() -> None:
    """While the broker hangs (a blackholed Redis), every publish returns at once;
    once it answers, what was queued goes out in publish order."""
    broker = FlakyBroker()
    broker.down = False
    broker.answering.clear()
    publisher = Publisher(broker)
    async with asyncio.timeout(1):  # each would wait for the broker without the queue
        for seq in range(1, 101):
            await publisher.publish(7, [_event(seq)], {})
            await asyncio.sleep(0)  # let the sending task run (it hangs in the broker)
    assert broker.attempts >= 1 and broker.taken == []
    broker.answering.set()
    await broker.until(lambda: len(broker.taken) == 200)
    assert broker.seqs() == list(range(1, 101))
    assert broker.seqs("org:7") == list(range(1, 101))
    await publisher.close()


async def test_an_unavailable_broker_is_retried_without_failing_the_append() -> None:
    """While the broker is down publish returns (the events are stored) and failed
    round trips are counted; once it is back, what it missed is published, in order."""
    broker = FlakyBroker()
    publisher = Publisher(broker)
    await publisher.publish(7, [_event(1)], {})
    await publisher.publish(7, [_event(2)], {})
    await broker.until(lambda: publisher.failures >= 1)
    assert broker.taken == []
    broker.down = False
    await broker.until(lambda: len(broker.taken) == 4)
    assert broker.seqs() == [1, 2]
    await publisher.close()


async def test_messages_older_than_max_age_are_dropped_not_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages queued through an outage longer than ``MAX_AGE`` are dropped and
    counted rather than sent when the broker is back (nodes read those events from
    storage)."""
    monkeypatch.setattr(publish, "MAX_AGE", 0.2)
    monkeypatch.setattr(publish, "RETRY_DELAY", 0.3)
    broker = FlakyBroker()
    publisher = Publisher(broker)
    await publisher.publish(7, [_event(1)], {})
    await broker.until(lambda: publisher.failures == 1)
    broker.down = False  # back, but the retry comes after MAX_AGE
    await publisher.close(grace=5)  # returns once the queue is empty
    assert broker.taken == []
    assert publisher.dropped == 2


async def test_close_sends_what_is_queued_then_ignores_later_publishes() -> None:
    """close() lets the queue go out, stops the sending task, and a publish after it
    is ignored (the event is stored; nothing is left spinning against a closed broker)."""
    broker = FlakyBroker()
    broker.down = False
    publisher = Publisher(broker)
    before = asyncio.all_tasks()
    await publisher.publish(7, [_event(1)], {})
    await publisher.close()
    assert broker.seqs() == [1]
    await publisher.publish(7, [_event(2)], {})
    assert broker.seqs() == [1]
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()


async def test_the_in_process_broker_delivers_before_publish_returns() -> None:
    """With ``memory://`` publishing stays a function call: subscribers have the
    event when publish returns (before the append is acknowledged)."""
    broker = open_broker("memory://")
    got: list[tuple[str, int]] = []
    await broker.start(lambda channel, payload: got.append((channel, unpack(payload).seq)))
    await broker.subscribe("call:1")
    await broker.subscribe("org:7")
    publisher = Publisher(broker)
    await publisher.publish(7, [_event(1)], {})
    assert got == [("call:1", 1), ("org:7", 1)]
    await publisher.close()
    await broker.close()


async def test_shutdown_closes_the_publisher_after_its_users_and_before_the_broker(
    tmp_path: Path,
) -> None:
    """The server's shutdown closes the publisher once the services that publish
    have closed, and before the broker it publishes to."""
    services = await build_services(Settings(data_dir=tmp_path))
    closed: list[str] = []

    def recorded(name: str, close: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def record() -> None:
            closed.append(name)
            await close()

        return record

    services.publisher.close = recorded("publisher", services.publisher.close)  # type: ignore[method-assign]
    services.broker.close = recorded("broker", services.broker.close)  # type: ignore[method-assign]
    await _close_services(services)
    assert closed == ["publisher", "broker"]
