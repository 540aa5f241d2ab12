"""firehose: organization event-stream subscribers on an organization with many live calls.

Calls get transcripts round-robin at a fixed total rate through their producer
WebSockets; a few ``/v1/events`` subscribers each subscribe to
``transcription`` with filter ``*``, so every event goes to every one of them
through the organization's single broker subscription. Measures server CPU
per delivered event, deliveries, and publish-to-deliver latency. Subscribers
run in this process (there are few of them); the client CPU column says
whether that limited the result.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from bench import rawws
from bench.common import Api, Result, base_parser, emit, print_params
from bench.live import Published, pace
from bench.metrics import CpuMeter, latency_summary
from bench.producers import Producer, open_producers, wait_acked
from bench.server import HOST, Server
from bench.workers import raise_nofile, run_async

__all__ = ["main", "run"]

SUBSCRIBE = orjson.dumps({"action": "subscribe", "topic": "transcription", "filter": "*"})


class Subscriber:
    """Counts transcripts and samples their latency (content starts with the send time)."""

    def __init__(self, sample_every: int) -> None:
        self.received = 0
        self.acked = asyncio.get_running_loop().create_future()
        self.latencies_us: list[float] = []
        self.complete = asyncio.Event()
        self._target: int | None = None
        self._every = sample_every

    def expect(self, count: int) -> None:
        """Set ``complete`` once ``count`` transcripts have arrived."""
        self._target = count
        if self.received >= count:
            self.complete.set()

    def on_text(self, payload: bytes, arrived_ns: int | None = None) -> None:
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind == "subscribed" and not self.acked.done():
            self.acked.set_result(None)
        elif kind == "transcript":
            self.received += 1
            if self._target is not None and self.received >= self._target:
                self.complete.set()
            if self.received % self._every == 0:
                sent_ns = int(message["data"]["content"].split(" ", 1)[0])
                self.latencies_us.append(((arrived_ns or time.time_ns()) - sent_ns) / 1000)


async def _publish(
    producers: Sequence[Producer], published: Published, rate: float, count: int
) -> None:
    def send(i: int) -> None:
        producers[i % len(producers)].send(i)

    published.late = await pace(count, rate, send)
    await wait_acked(producers, published, 60)


async def run(
    calls: int = 300,
    subscribers: int = 5,
    rate: float = 1000.0,
    duration: float = 15.0,
    sample_every: int = 5,
    keep_data: bool = False,
) -> Result:
    raise_nofile()
    count = max(1, round(rate * duration))
    params: dict[str, Any] = {
        "calls": calls,
        "event_stream_subscribers": subscribers,
        "filter": "transcription *",
        "rate_per_s": rate,
        "duration_s": duration,
        "events": count,
        "latency_sample_every": sample_every,
    }
    print_params("firehose", params)
    sids = [f"CAfire{i:05d}" for i in range(calls)]
    with Server({}, keep_data) as server:
        async with Api(server.http, server.key) as api:
            await api.create_calls(sids)
        subs = [Subscriber(sample_every) for _ in range(subscribers)]
        links = []
        for sub in subs:
            link = await rawws.connect(
                HOST, server.port, f"/v1/events?token={server.key}", sub.on_text
            )
            link.send_text(SUBSCRIBE)
            links.append(link)
        async with asyncio.timeout(10):
            await asyncio.gather(*(s.acked for s in subs))
        published = Published()
        producers = await open_producers(HOST, server.port, server.key, sids, published, 100)
        meter = CpuMeter(server.pid, [os.getpid()])
        meter.start()
        try:
            await _publish(producers, published, rate, count)
            for sub in subs:
                sub.expect(published.acked)
            try:
                async with asyncio.timeout(30):  # deliveries trail the last ack by milliseconds
                    await asyncio.gather(*(sub.complete.wait() for sub in subs))
            except TimeoutError:
                published.error("subscribers still missing events after 30 s")
            window = meter.stop()
        finally:
            for producer in producers:
                if producer.ws is not None:
                    producer.ws.abort()
            for link in links:
                link.abort()
    delivered = sum(s.received for s in subs)
    results: dict[str, Any] = {
        "events_published": published.acked,
        "deliveries": delivered,
        "expected_deliveries": published.acked * subscribers,
        "deliveries_per_s": round(delivered / window.seconds, 1),
        "server_us_per_event": round(window.server / max(published.acked, 1) * 1e6, 1),
        "server_us_per_delivery": round(window.server / max(delivered, 1) * 1e6, 2),
        "latency": latency_summary(lat for s in subs for lat in s.latencies_us),
        "publish_errors": published.errors,
        "cpu": window.as_dict(),
    }
    warnings = window.warnings()
    if delivered != published.acked * subscribers:
        warnings.append("not every subscriber received every event")
    return {
        "scenario": "firehose",
        "params": params,
        "results": results,
        "targets": {},
        "warnings": warnings,
        "server_log": server.problems(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--calls", type=int, default=300, help="live calls")
    parser.add_argument("--subscribers", type=int, default=5, help="event-stream subscribers")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second in total")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of publishing")
    args = parser.parse_args(argv)
    result: Result = run_async(
        lambda: run(args.calls, args.subscribers, args.rate, args.duration, 5, args.keep_data)
    )
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
