"""many_calls: many concurrent calls, a few subscribers each, producers on WebSockets.

Events are spread round-robin over the calls at a fixed total rate, each sent
on its call's producer WebSocket (``/v1/ingest/{sid}``) without waiting for
the previous ack. Measures publish-to-deliver latency. Target: p99 at most 5 ms.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, cast

from bench.common import Api, Result, add_client_options, base_parser, emit, print_params, target
from bench.live import Published, pace, run_live
from bench.producers import Producer, open_producers, wait_acked
from bench.server import HOST, Server
from bench.subscribers import ClientKind
from bench.workers import run_async

__all__ = ["main", "run"]

TARGET_P99_MS = 5.0


async def publish_ws(
    producers: Sequence[Producer], published: Published, rate: float, count: int
) -> Published:
    def send(i: int) -> None:
        producers[i % len(producers)].send(i)

    published.late = await pace(count, rate, send)
    await wait_acked(producers, published, 60)
    return published


async def run(
    calls: int = 1000,
    subscribers_per_call: int = 2,
    rate: float = 1000.0,
    duration: float = 20.0,
    client: ClientKind = "raw",
    procs: int = 2,
    keep_data: bool = False,
) -> Result:
    count = max(1, round(rate * duration))
    params: dict[str, Any] = {
        "calls": calls,
        "subscribers_per_call": subscribers_per_call,
        "rate_per_s": rate,
        "duration_s": duration,
        "events": count,
        "publisher": f"producer WebSocket x{calls} (one per call)",
        "client": client,
        "client_procs": procs,
        "latency_sample_every": 1,
    }
    print_params("many_calls", params)
    env = {"SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(max(10, subscribers_per_call))}
    sids = [f"CAmany{i:05d}" for i in range(calls)]
    with Server(env, keep_data) as server:
        async with Api(server.http, server.key) as api:
            await api.create_calls(sids)
        published = Published()
        producers = await open_producers(HOST, server.port, server.key, sids, published, 100)
        try:
            run, _ = await run_live(
                server,
                [sid for sid in sids for _ in range(subscribers_per_call)],
                dict.fromkeys(sids, 1),  # history: the call's first status event
                kind=client,
                procs=procs,
                sample_every=1,
                publish=lambda: publish_ws(producers, published, rate, count),
            )
        finally:
            for producer in producers:
                if producer.ws is not None:
                    producer.ws.abort()
    results = run.results()
    results["events_published"] = published.acked
    results["server_us_per_event"] = (
        round(run.window.server / published.acked * 1e6, 1) if published.acked else float("nan")
    )
    results["publish_errors"] = published.errors
    results["publisher_late_sends"] = published.late
    ack = sorted(published.ack_us)
    results["ws_ack_ms_p50"] = ack[len(ack) // 2] / 1000 if ack else float("nan")
    results["ws_ack_ms_p99"] = ack[int(len(ack) * 0.99)] / 1000 if ack else float("nan")
    warnings = run.window.warnings()
    if run.connect_failed:
        warnings.append(f"{run.connect_failed} subscribers failed to join: {run.connect_errors}")
    if results["deliveries"] != results["expected_deliveries"]:
        warnings.append("not every subscriber received every event")
    if published.late > count * 0.01:
        warnings.append(f"publisher fell behind its schedule ({published.late} late sends)")
    return {
        "scenario": "many_calls",
        "params": params,
        "results": results,
        "targets": {
            "latency_p99_ms": target(results["latency"]["p99_ms"], TARGET_P99_MS, at_most=True)
        },
        "warnings": warnings,
        "server_log": server.problems(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="concurrent calls")
    parser.add_argument("--subscribers-per-call", type=int, default=2, help="subscribers per call")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second in total")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    add_client_options(parser, procs=2)
    args = parser.parse_args(argv)
    result: Result = run_async(
        lambda: run(
            args.calls,
            args.subscribers_per_call,
            args.rate,
            args.duration,
            cast(ClientKind, args.client),
            args.procs,
            args.keep_data,
        )
    )
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
