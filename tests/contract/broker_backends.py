"""The ``brokers`` fixture: every broker backend, as two nodes of one deployment.

For the in-process broker both ends are one instance. For Redis they are two
``RedisBroker`` instances sharing the session's Redis, so every contract test
publishes on one node and receives on the other, as a deployment does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from scribeline.broker import Broker, open_broker

__all__ = ["BROKER_BACKENDS", "BrokerPair", "Collector", "brokers"]

BROKER_BACKENDS = ["memory", "redis"]

#: Short enough that a contract test notices a dead connection quickly.
TEST_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class BrokerPair:
    """Two nodes' brokers: ``publisher`` publishes, ``subscriber`` is started by the test."""

    publisher: Broker
    subscriber: Broker


def _ignore(channel: str, payload: bytes) -> None:
    return None


@pytest.fixture(params=BROKER_BACKENDS)
async def brokers(request: pytest.FixtureRequest) -> AsyncIterator[BrokerPair]:
    if request.param == "memory":
        broker = open_broker("memory://")
        try:
            yield BrokerPair(broker, broker)
        finally:
            await broker.close()
        return
    server = request.getfixturevalue("redis_server")
    publisher = open_broker(server.url, timeout=TEST_TIMEOUT)
    subscriber = open_broker(server.url, timeout=TEST_TIMEOUT)
    await publisher.start(_ignore)
    try:
        yield BrokerPair(publisher, subscriber)
    finally:
        await subscriber.close()
        await publisher.close()


class Collector:
    """A started broker's callbacks: records deliveries and gap reports, and lets a
    test await the n-th of either."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.gaps = 0
        self._changed = asyncio.Event()

    def __call__(self, channel: str, payload: bytes) -> None:
        self.got.append((channel, payload))
        self._changed.set()

    def gap(self) -> None:
        self.gaps += 1
        self._changed.set()

    async def wait_for(self, count: int, seconds: float = 5.0) -> None:
        """Until ``count`` messages have been delivered."""
        await self.until(lambda: len(self.got) >= count, seconds)

    async def until(self, done: Callable[[], bool], seconds: float = 5.0) -> None:
        """Until ``done()`` holds, checked after every delivery or gap report."""
        async with asyncio.timeout(seconds):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def start(self, broker: Broker) -> Collector:
        await broker.start(self, self.gap)
        return self
