"""The Broker contract (broker/base.py), run against every broker backend.

Each test publishes on one node's broker and receives on another's (the same
instance for the in-process broker; two clients of one Redis otherwise).
"""

from __future__ import annotations

from scribeline.broker import pack, unpack, unpack_with_meta
from scribeline.events import StoredEvent
from tests.contract.broker_backends import BrokerPair, Collector


async def test_subscribed_channels_receive_in_publish_order(brokers: BrokerPair) -> None:
    """Every publish to a subscribed channel is delivered once, in order, and a
    healthy exchange reports no gap."""
    got = await Collector().start(brokers.subscriber)
    await brokers.subscriber.subscribe("a")
    for n in range(100):
        await brokers.publisher.publish("a", str(n).encode())
    await got.wait_for(100)
    assert got.got == [("a", str(n).encode()) for n in range(100)]
    assert got.gaps == 0


async def test_unsubscribed_channels_deliver_nothing(brokers: BrokerPair) -> None:
    """Messages of channels not subscribed, or no longer subscribed, are not delivered."""
    got = await Collector().start(brokers.subscriber)
    await brokers.subscriber.subscribe("a")
    await brokers.publisher.publish("b", b"no")
    await brokers.publisher.publish("a", b"yes")
    await got.wait_for(1)
    await brokers.subscriber.unsubscribe("a")
    await brokers.publisher.publish("a", b"late")
    await brokers.subscriber.subscribe("c")
    await brokers.publisher.publish("c", b"marker")
    await got.wait_for(2)
    assert got.got == [("a", b"yes"), ("c", b"marker")]


async def test_a_channel_subscribed_again_delivers_again(brokers: BrokerPair) -> None:
    """Unsubscribing and subscribing again resumes delivery (nothing from between)."""
    got = await Collector().start(brokers.subscriber)
    await brokers.subscriber.subscribe("a")
    await brokers.subscriber.unsubscribe("a")
    await brokers.publisher.publish("a", b"between")
    await brokers.subscriber.subscribe("a")
    await brokers.publisher.publish("a", b"after")
    await got.wait_for(1)
    await brokers.subscriber.subscribe("z")
    await brokers.publisher.publish("z", b"marker")
    await got.wait_for(2)
    assert got.got == [("a", b"after"), ("z", b"marker")]


async def test_publish_many_keeps_order_within_and_across_channels(brokers: BrokerPair) -> None:
    """A batch published at once arrives complete and in batch order on each channel,
    as an event goes to its stream's and its organization's channel."""
    got = await Collector().start(brokers.subscriber)
    await brokers.subscriber.subscribe("call:1")
    await brokers.subscriber.subscribe("org:1")
    batch = []
    for n in range(50):
        batch += [("call:1", b"%d" % n), ("org:1", b"%d" % n)]
    await brokers.publisher.publish_many(batch)
    await got.wait_for(100)
    for channel in ("call:1", "org:1"):
        assert [p for c, p in got.got if c == channel] == [b"%d" % n for n in range(50)]


async def test_many_channels_each_receive_their_own(brokers: BrokerPair) -> None:
    """Hundreds of subscribed channels each get exactly their own messages."""
    got = await Collector().start(brokers.subscriber)
    names = [f"call:{n}" for n in range(600)]  # more than one SUBSCRIBE batch
    for name in names:
        await brokers.subscriber.subscribe(name)
    await brokers.publisher.publish_many([(name, name.encode()) for name in names])
    await got.wait_for(len(names))
    assert sorted(got.got) == sorted((name, name.encode()) for name in names)


async def test_large_payloads_arrive_unchanged(brokers: BrokerPair) -> None:
    """A payload far larger than a socket read arrives byte for byte."""
    got = await Collector().start(brokers.subscriber)
    await brokers.subscriber.subscribe("a")
    payload = bytes(range(256)) * 2048  # 512 KiB, every byte value
    await brokers.publisher.publish("a", payload)
    await got.wait_for(1)
    assert got.got == [("a", payload)]


def test_events_round_trip_through_the_broker_codec() -> None:
    """pack/unpack preserve every field of a stored event, seq and epoch included,
    and the routing metadata."""
    event = StoredEvent("call:9", 42, "transcript", 123, {"content": "hé", "x": [1]}, True, "e1")
    assert unpack(pack(event)) == event
    assert unpack_with_meta(pack(event, {"call_sid": "CA1"})) == (event, {"call_sid": "CA1"})


async def test_ping_succeeds_when_connected(brokers: BrokerPair) -> None:
    """A started broker answers ping."""
    await Collector().start(brokers.subscriber)
    await brokers.subscriber.ping()
    await brokers.publisher.ping()
