"""Per-event publish cost of the brokers: in-process (memory) against Redis.

Run on its own (it starts its own ``redis-server`` on a free loopback port):

    .venv/bin/python -m bench.broker_publish [--events 20000]

Each event is published as the ingest path does: one packed payload to the
stream's channel and to the organization's channel. Reported per event:
wall-clock µs and this process's CPU µs (user + system; with a subscriber,
the receiving node's work is in the same process and included). Scenarios:

* ``memory``: ``MemoryBroker.publish_many``, delivering to a no-op subscriber;
* ``redis-py client``: for comparison, redis-py's own client (pooled
  connections), a two-command pipeline per event;
* ``redis two publishes``: two awaited ``publish`` calls per event (two round
  trips, the path before ``publish_many``);
* ``redis publish_many``: both channels in one round trip, nobody subscribed;
* ``redis + subscriber``: the same, and a second broker (another "node" in
  this process) subscribed to both channels receives every message;
* ``redis 64 concurrent``: 64 tasks publishing at once (pipelined on one
  connection), as concurrent ingest requests do;
* ``redis batch of 10``: ten events per ``publish_many`` (an ingest batch).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import uvloop

from scribeline.broker import Broker, open_broker, pack
from scribeline.events import EventType, StoredEvent
from tests.services import Redis

STREAM, ORG = "call:1", "org:1"


def _payload(seq: int) -> bytes:
    data = {"content": "hello there, how can I help you today?", "speaker": "agent"}
    event = StoredEvent(STREAM, seq, EventType.TRANSCRIPT, 1_700_000_000_000, data, False, "e1")
    return pack(event, {"call_sid": "CA1", "assistant_id": 1})


class Counter:
    def __init__(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.done = asyncio.Event()

    def __call__(self, channel: str, payload: bytes) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.done.set()


async def _measure(
    name: str, events: int, run: Callable[[], Awaitable[None]]
) -> tuple[str, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return name, wall / events * 1e6, cpu / events * 1e6


async def _sequential(broker: Broker, events: int) -> None:
    for seq in range(events):
        p = _payload(seq)
        await broker.publish_many(((STREAM, p), (ORG, p)))


async def _two_publishes(broker: Broker, events: int) -> None:
    for seq in range(events):
        p = _payload(seq)
        await broker.publish(STREAM, p)
        await broker.publish(ORG, p)


async def _concurrent(broker: Broker, events: int, tasks: int = 64) -> None:
    async def worker(part: range) -> None:
        for seq in part:
            p = _payload(seq)
            await broker.publish_many(((STREAM, p), (ORG, p)))

    await asyncio.gather(*(worker(range(n, events, tasks)) for n in range(tasks)))


async def _batched(broker: Broker, events: int, size: int = 10) -> None:
    for start in range(0, events, size):
        messages: list[tuple[str, bytes]] = []
        for seq in range(start, min(start + size, events)):
            p = _payload(seq)
            messages += ((STREAM, p), (ORG, p))
        await broker.publish_many(messages)


async def _redis_py(url: str, events: int) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        for seq in range(events):
            p = _payload(seq)
            pipe = client.pipeline(transaction=False)
            pipe.publish(STREAM, p)
            pipe.publish(ORG, p)
            await pipe.execute()
    finally:
        await client.aclose()


async def main(events: int) -> None:
    results = []
    memory = open_broker("memory://")
    got = Counter(2 * events)
    await memory.start(got)
    for channel in (STREAM, ORG):
        await memory.subscribe(channel)
    results.append(await _measure("memory", events, lambda: _sequential(memory, events)))
    await memory.close()

    server = Redis().start()
    try:
        publisher = open_broker(server.url)
        await publisher.start(lambda channel, payload: None)
        await _sequential(publisher, 500)  # warm up the connection
        results.append(
            await _measure("redis-py client", events, lambda: _redis_py(server.url, events))
        )
        results.append(
            await _measure("redis two publishes", events, lambda: _two_publishes(publisher, events))
        )
        results.append(
            await _measure("redis publish_many", events, lambda: _sequential(publisher, events))
        )
        subscriber = open_broker(server.url)
        got = Counter(2 * events)
        await subscriber.start(got)
        for channel in (STREAM, ORG):
            await subscriber.subscribe(channel)

        async def with_subscriber() -> None:
            await _sequential(publisher, events)
            await got.done.wait()

        results.append(await _measure("redis + subscriber", events, with_subscriber))
        await subscriber.close()
        results.append(
            await _measure("redis 64 concurrent", events, lambda: _concurrent(publisher, events))
        )
        results.append(
            await _measure("redis batch of 10", events, lambda: _batched(publisher, events))
        )
        await publisher.close()
    finally:
        server.destroy()

    print(f"{events} events, each to 2 channels (uvloop, one process)")
    print(f"{'scenario':<22} {'wall µs/event':>14} {'CPU µs/event':>13}")
    for name, wall, cpu in results:
        print(f"{name:<22} {wall:>14.1f} {cpu:>13.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    uvloop.run(main(parser.parse_args().events))
