"""Faults of the Redis broker: every loss is reported (``on_gap``) and healed.

Each test drives a real ``redis-server``: a killed pub/sub connection, a
restart, an overflowing inbox, and a TCP proxy that blackholes, resets or
refuses, which only the idle probe can notice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from scribeline.broker import Broker, BrokerUnavailable
from scribeline.broker.redis import RedisBroker
from tests.contract.broker_backends import Collector
from tests.faults import TcpProxy
from tests.services import Redis, running_redis

PROBE_INTERVAL = 0.3
TIMEOUT = 0.5


@pytest.fixture
def own_redis() -> Iterator[Redis]:
    """A Redis of this test's own, free to be stopped."""
    with running_redis() as server:
        yield server


@pytest.fixture
async def proxy(redis_server: Redis) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(redis_server.port).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def opened() -> AsyncIterator[list[Broker]]:
    """Brokers a test opens, closed after it."""
    brokers: list[Broker] = []
    try:
        yield brokers
    finally:
        for broker in brokers:
            await broker.close()


def _open(opened: list[Broker], url: str, **options: float) -> RedisBroker:
    broker = RedisBroker(
        url,
        probe_interval=options.pop("probe_interval", PROBE_INTERVAL),
        timeout=options.pop("timeout", TIMEOUT),
        inbox_messages=int(options.pop("inbox_messages", 10_000)),
    )
    opened.append(broker)
    return broker


async def _publish_until_accepted(broker: Broker, channel: str, payload: bytes) -> None:
    """Publish, retrying while the broker still reports Redis unavailable."""
    async with asyncio.timeout(10):
        while True:
            try:
                await broker.publish(channel, payload)
                return
            except BrokerUnavailable:
                await asyncio.sleep(0.05)  # the publisher fails fast for a moment after an outage


async def test_killed_pubsub_connection_reports_a_gap_and_resubscribes(
    own_redis: Redis, opened: list[Broker]
) -> None:
    """CLIENT KILL TYPE pubsub: the broker reports a possible loss, reconnects, counts
    the reconnect and receives the channels it had subscribed again."""
    publisher = _open(opened, own_redis.url)
    subscriber = _open(opened, own_redis.url)
    got = await Collector().start(subscriber)
    for channel in ("a", "b"):
        await subscriber.subscribe(channel)
    await publisher.publish("a", b"1")
    await got.wait_for(1)

    assert int(own_redis.command("CLIENT", "KILL", "TYPE", "pubsub")) == 1  # the subscriber
    await got.until(lambda: subscriber.counters()["reconnects"] == 1)
    assert got.gaps >= 2  # one when the connection is lost, one once resubscribed

    await publisher.publish_many([("a", b"2"), ("b", b"3")])
    await got.wait_for(3)
    assert got.got == [("a", b"1"), ("a", b"2"), ("b", b"3")]


async def test_every_outage_reconnects_quickly_not_after_the_last_backoff(
    own_redis: Redis, opened: list[Broker]
) -> None:
    """Nine pub/sub kills in a row, each after the broker is back: each reconnect
    starts from the shortest wait (a connection that worked resets the backoff),
    so all nine take well under the 4.6 s that doubling waits would add up to."""
    subscriber = _open(opened, own_redis.url)
    got = await Collector().start(subscriber)
    await subscriber.subscribe("a")
    loop = asyncio.get_running_loop()
    began = loop.time()
    for n in range(1, 10):
        own_redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        await got.until(lambda n=n: subscriber.counters()["reconnects"] == n, seconds=10)
    assert loop.time() - began < 3.0


async def test_redis_restart_degrades_then_recovers(own_redis: Redis, opened: list[Broker]) -> None:
    """While Redis is down: ping and publish fail at once with BrokerUnavailable, a
    subscribe returns, and gaps keep being reported (the hub polls storage). When it
    is back: one reconnect, every channel (old and new) delivers again."""
    publisher = _open(opened, own_redis.url)
    subscriber = _open(opened, own_redis.url)
    got = await Collector().start(subscriber)
    await subscriber.subscribe("a")
    await publisher.publish("a", b"before")
    await got.wait_for(1)

    own_redis.stop()
    await got.until(lambda: got.gaps >= 3)  # one per failed reconnect attempt
    with pytest.raises(BrokerUnavailable):
        await subscriber.ping()
    with pytest.raises(BrokerUnavailable):
        await publisher.publish("a", b"lost")
    async with asyncio.timeout(TIMEOUT):
        await subscriber.subscribe("b")  # recorded; the reconnect subscribes it

    own_redis.start()
    await got.until(lambda: subscriber.counters()["reconnects"] == 1)
    await _publish_until_accepted(publisher, "b", b"new channel")
    await publisher.publish("a", b"after")
    await got.wait_for(3)
    assert got.got == [("a", b"before"), ("b", b"new channel"), ("a", b"after")]
    await subscriber.ping()


async def test_half_open_connection_is_noticed_by_the_probe(
    redis_server: Redis, proxy: TcpProxy, opened: list[Broker]
) -> None:
    """A proxy that silently stops forwarding (sockets stay open) is detected within
    probe interval + two timeouts; the loss is reported, and once the path forwards
    again the broker reconnects and delivers."""
    publisher = _open(opened, redis_server.url)  # another node, with a healthy path
    subscriber = _open(opened, proxy.url())
    got = await Collector().start(subscriber)
    await subscriber.subscribe("a")
    await publisher.publish("a", b"1")
    await got.wait_for(1)
    gaps = got.gaps

    loop = asyncio.get_running_loop()
    proxy.blackhole()
    began = loop.time()
    await got.until(lambda: subscriber.counters()["stale"] >= 1, seconds=10)
    noticed = loop.time() - began
    # Nominally within PROBE_INTERVAL + TIMEOUT (0.8 s): the bound leaves room for a
    # loaded machine and is still far under the hub's periodic position check (20 s
    # by default), which is all that would find the losses without the probe.
    assert noticed < 5.0
    assert got.gaps > gaps
    with pytest.raises(BrokerUnavailable):
        await subscriber.ping()

    await publisher.publish("a", b"2")  # lost: nobody is subscribed through the proxy
    proxy.resume()
    await got.until(lambda: subscriber.counters()["reconnects"] >= 1, seconds=10)
    await publisher.publish("a", b"3")
    await got.wait_for(2)
    assert got.got == [("a", b"1"), ("a", b"3")]


async def test_a_subscribe_recorded_during_the_first_connect_reports_a_gap(
    redis_server: Redis, opened: list[Broker]
) -> None:
    """A subscribe made before the very first pub/sub connection is up is recorded;
    that connection puts it in place and reports a possible gap, so the hub checks
    at once what was published before the subscription took effect."""
    subscriber = _open(opened, redis_server.url)
    got = Collector()
    starting = asyncio.get_running_loop().create_task(got.start(subscriber))
    await subscriber.subscribe("a")  # no connection yet: recorded
    await starting
    await got.until(lambda: got.gaps >= 1)
    assert subscriber.counters()["reconnects"] == 0

    publisher = _open(opened, redis_server.url)
    await publisher.publish("a", b"x")
    await got.wait_for(1)
    assert got.got == [("a", b"x")]


async def test_reset_and_refused_connections_are_retried(
    redis_server: Redis, proxy: TcpProxy, opened: list[Broker]
) -> None:
    """Connections reset by the path, then refused for a while: the broker keeps
    reporting gaps and retrying with backoff, and reconnects once it may."""
    subscriber = _open(opened, proxy.url())
    got = await Collector().start(subscriber)
    await subscriber.subscribe("a")

    proxy.refuse()
    await proxy.close_all()
    accepted = proxy.accepted
    await got.until(lambda: got.gaps >= 3 and proxy.accepted >= accepted + 2)
    assert subscriber.counters()["reconnects"] == 0

    proxy.resume()
    await got.until(lambda: subscriber.counters()["reconnects"] == 1, seconds=10)
    await _publish_until_accepted(subscriber, "a", b"x")
    await got.wait_for(1)
    assert got.got == [("a", b"x")]


async def test_a_full_inbox_drops_counts_and_reports_a_gap(
    redis_server: Redis, opened: list[Broker]
) -> None:
    """When messages arrive faster than they are delivered, the reader drops past its
    bound rather than block or grow, counts the drops, and reports a gap; what is
    delivered stays in order."""
    publisher = _open(opened, redis_server.url)
    subscriber = _open(opened, redis_server.url, inbox_messages=10)
    got = await Collector().start(subscriber)
    await subscriber.subscribe("a")
    sent = [b"%d" % n for n in range(2000)]
    await publisher.publish_many([("a", payload) for payload in sent])
    await publisher.publish("a", b"end")  # not dropped once the inbox has drained

    def settled() -> bool:
        return got.gaps >= 1 and len(got.got) + subscriber.counters()["dropped"] == len(sent) + 1

    await got.until(settled)
    assert subscriber.counters()["dropped"] >= 1
    order = {payload: n for n, payload in enumerate([*sent, b"end"])}
    positions = [order[payload] for _, payload in got.got]
    assert positions == sorted(set(positions))


async def test_close_leaves_no_task_behind(redis_server: Redis) -> None:
    """close() stops every task the broker started and its connections."""
    before = asyncio.all_tasks()
    broker = RedisBroker(redis_server.url, probe_interval=PROBE_INTERVAL, timeout=TIMEOUT)
    await Collector().start(broker)
    await broker.subscribe("a")
    await broker.publish("a", b"x")
    await broker.close()
    await asyncio.sleep(0)  # done-callbacks of finished tasks run on the next turn
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()
