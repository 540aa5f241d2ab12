"""Publishing after commit: a broker outage neither fails the append nor loses the
publish for good."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from scribeline.broker import Broker, BrokerUnavailable, Deliver, OnGap, unpack
from scribeline.events import EventType, StoredEvent
from scribeline.ingest.publish import Publisher


class FlakyBroker(Broker):
    """Refuses publishes while ``down``; records what it took, in order."""

    def __init__(self) -> None:
        self.down = True
        self.taken: list[tuple[str, bytes]] = []
        self.round_trips = 0
        self.took = asyncio.Event()

    async def start(self, deliver: Deliver, on_gap: OnGap | None = None) -> None:
        return None

    async def publish(self, channel: str, payload: bytes) -> None:
        await self.publish_many([(channel, payload)])

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if self.down:
            raise BrokerUnavailable("Redis is unavailable")
        self.round_trips += 1
        self.taken.extend(messages)
        self.took.set()

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _event(seq: int) -> StoredEvent:
    return StoredEvent("call:1", seq, EventType.TRANSCRIPT, 0, {}, False, "e")


async def test_a_batch_goes_to_both_channels_in_one_round_trip() -> None:
    """Each event goes to its stream's and its organization's channel, all in one call."""
    broker = FlakyBroker()
    broker.down = False
    await Publisher(broker).publish(7, [_event(1), _event(2)], {"call_sid": "CA1"})
    assert broker.round_trips == 1
    assert [(c, unpack(p).seq) for c, p in broker.taken] == [
        ("call:1", 1),
        ("org:7", 1),
        ("call:1", 2),
        ("org:7", 2),
    ]


async def test_an_unavailable_broker_is_retried_without_failing_the_append() -> None:
    """While the broker is down publish returns (the events are stored) and counts the
    failure; once it is back, what it missed is published, in order."""
    broker = FlakyBroker()
    publisher = Publisher(broker)
    await publisher.publish(7, [_event(1)], {})
    await publisher.publish(7, [_event(2)], {})
    assert publisher.failures == 2 and broker.taken == []
    broker.down = False
    async with asyncio.timeout(5):
        while len(broker.taken) < 4:
            broker.took.clear()
            await broker.took.wait()
    assert [unpack(p).seq for c, p in broker.taken if c == "call:1"] == [1, 2]
    await publisher.close()
