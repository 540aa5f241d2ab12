"""The client SDK's own cost: how fast ``AsyncClient.live_transcript`` takes a long
history, and its publish-to-yield latency on a live call.

Both run the SDK in this process against a fresh server process, so the
client CPU per event is this process's CPU time over the window (the
producer's REST calls in the live part included, hence reported apart).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import Api, base_parser, emit, print_params
from bench.metrics import latency_summary
from bench.server import Server
from scribeline.client import AsyncClient, TranscriptEvent

__all__ = ["run"]


async def _history(server: Server, events: int) -> dict[str, Any]:
    sid = "CA-history"
    async with Api(server.http, server.key) as api:
        await api.create_calls([sid])
        batch = 1000
        for start in range(0, events, batch):
            body = [
                {"content": f"segment {i}", "speaker": "user", "segment_id": f"s{i}"}
                for i in range(start, min(start + batch, events))
            ]
            await api.post(f"/v1/calls/{sid}/transcripts", body)
    async with AsyncClient(server.http, api_key=server.key) as client:
        cpu, wall, seen = time.process_time(), time.perf_counter(), 0
        server_cpu = server.cpu_seconds()
        async with client.live_transcript(sid) as stream:
            async for event in stream:
                if isinstance(event, TranscriptEvent):
                    seen += 1
                    if seen == events:
                        break
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        server_cpu = server.cpu_seconds() - server_cpu
    return {
        "events": seen,
        "events_per_s": round(seen / wall, 1),
        "client_us_per_event": round(cpu / seen * 1e6, 2),
        "server_us_per_event": round(server_cpu / seen * 1e6, 2),
    }


async def _live(server: Server, rate: float, duration: float) -> dict[str, Any]:
    sid = "CA-live"
    latencies: list[float] = []
    total = int(rate * duration)
    async with (
        Api(server.http, server.key) as api,
        AsyncClient(server.http, api_key=server.key) as client,
    ):
        await api.create_calls([sid])
        stream = client.live_transcript(sid)
        first = await stream.__anext__()  # the status snapshot: subscribed

        async def produce() -> None:
            start = time.perf_counter()
            for i in range(total):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))  # pacing
                body = {"content": f"{time.perf_counter_ns()} {i}", "speaker": "user"}
                await api.post(f"/v1/calls/{sid}/transcripts", body)

        producer = asyncio.create_task(produce())
        async for event in stream:
            if isinstance(event, TranscriptEvent):
                sent = int(event.content.split()[0])
                latencies.append((time.perf_counter_ns() - sent) / 1e3)
                if len(latencies) == total:
                    break
        await producer
        await stream.aclose()
    assert first is not None
    return latency_summary(latencies)


def run(events: int = 50_000, rate: float = 200.0, duration: float = 10.0) -> dict[str, Any]:
    print_params("client_sdk", {"history_events": events, "rate": rate, "duration": duration})
    with Server() as server:
        history = asyncio.run(_history(server, events))
        live = asyncio.run(_live(server, rate, duration))
    return {"name": "client_sdk", "results": {"history": history, "live_latency": live}}


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="history length")
    parser.add_argument("--rate", type=float, default=200.0, help="live events per second")
    parser.add_argument("--duration", type=float, default=10.0, help="live seconds")
    args = parser.parse_args()
    emit(run(args.events, args.rate, args.duration), args.json)


if __name__ == "__main__":
    main()
