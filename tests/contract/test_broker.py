"""The Broker contract (broker/base.py), run against every broker backend."""

from __future__ import annotations

import asyncio

from scribeline.broker import Broker, pack, unpack
from scribeline.events import StoredEvent


class Collector:
    """Records deliveries and lets a test await the n-th one."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, payload: bytes) -> None:
        self.got.append((channel, payload))
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.got) < count:
                self._changed.clear()
                await self._changed.wait()


async def _collect(broker: Broker) -> Collector:
    collector = Collector()
    await broker.start(collector)
    return collector


async def test_subscribed_channels_receive_in_publish_order(broker: Broker) -> None:
    """Every publish to a subscribed channel is delivered once, in order."""
    got = await _collect(broker)
    await broker.subscribe("a")
    for n in range(100):
        await broker.publish("a", str(n).encode())
    await got.wait_for(100)
    assert got.got == [("a", str(n).encode()) for n in range(100)]


async def test_unsubscribed_channels_deliver_nothing(broker: Broker) -> None:
    """Messages of channels not subscribed, or no longer subscribed, are not delivered."""
    got = await _collect(broker)
    await broker.subscribe("a")
    await broker.publish("b", b"no")
    await broker.publish("a", b"yes")
    await got.wait_for(1)
    await broker.unsubscribe("a")
    await broker.publish("a", b"late")
    await broker.subscribe("c")
    await broker.publish("c", b"marker")
    await got.wait_for(2)
    assert got.got == [("a", b"yes"), ("c", b"marker")]


def test_events_round_trip_through_the_broker_codec() -> None:
    """pack/unpack preserve every field of a stored event."""
    event = StoredEvent("call:9", 42, "transcript", 123, {"content": "hé", "x": [1]}, True)
    assert unpack(pack(event)) == event


async def test_ping_succeeds_when_connected(broker: Broker) -> None:
    """A started broker answers ping."""
    await _collect(broker)
    await broker.ping()
