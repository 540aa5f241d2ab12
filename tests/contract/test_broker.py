"""The Broker contract (broker/base.py), run against every broker backend."""

from __future__ import annotations

import asyncio

from scribeline.broker import Broker, pack, unpack
from scribeline.events import StoredEvent


async def _collect(broker: Broker) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    await broker.start(lambda channel, payload: got.append((channel, payload)))
    return got


async def _until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.001)


async def test_subscribed_channels_receive_in_publish_order(broker: Broker) -> None:
    """Every publish to a subscribed channel is delivered once, in order."""
    got = await _collect(broker)
    await broker.subscribe("a")
    for n in range(100):
        await broker.publish("a", str(n).encode())
    await _until(lambda: len(got) >= 100)
    assert got == [("a", str(n).encode()) for n in range(100)]


async def test_unsubscribed_channels_deliver_nothing(broker: Broker) -> None:
    """Messages of channels not subscribed, or no longer subscribed, are not delivered."""
    got = await _collect(broker)
    await broker.subscribe("a")
    await broker.publish("b", b"no")
    await broker.publish("a", b"yes")
    await _until(lambda: len(got) >= 1)
    await broker.unsubscribe("a")
    await broker.publish("a", b"late")
    await broker.subscribe("c")
    await broker.publish("c", b"marker")
    await _until(lambda: len(got) >= 2)
    assert got == [("a", b"yes"), ("c", b"marker")]


def test_events_round_trip_through_the_broker_codec() -> None:
    """pack/unpack preserve every field of a stored event."""
    event = StoredEvent("call:9", 42, "transcript", 123, {"content": "hé", "x": [1]}, True)
    assert unpack(pack(event)) == event


async def test_ping_succeeds_when_connected(broker: Broker) -> None:
    """A started broker answers ping."""
    await _collect(broker)
    await broker.ping()
