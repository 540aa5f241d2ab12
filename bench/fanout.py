"""fanout: one call, many subscribers, a steady REST publisher.

Measures server CPU per delivered message (µs of server CPU per delivery =
CPU-seconds per 1,000 deliveries), deliveries per second and
publish-to-deliver latency. Target: at most 9 µs of server CPU per delivery.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

from bench.common import Api, Result, add_client_options, base_parser, emit, print_params, target
from bench.live import Published, pace, run_live
from bench.reference import SERVER_KINDS, ServerKind, make_server
from bench.subscribers import ClientKind
from bench.workers import run_async

__all__ = ["main", "run"]

TARGET_US_PER_DELIVERY = 9.0


async def publish_rest(api: Api, sids: Sequence[str], rate: float, count: int) -> Published:
    """``count`` transcripts through REST at ``rate`` per second in total, pipelined, one
    per request, round-robin over ``sids``."""
    out = Published()
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        sid = sids[i % len(sids)]
        began = time.perf_counter_ns()
        try:
            seq = await api.append(sid, i)
        except Exception as exc:
            out.error(exc)
            return
        out.ack_us.append((time.perf_counter_ns() - began) // 1000)
        out.stored(sid, seq)

    def send(i: int) -> None:
        out.sent += 1
        task = asyncio.get_running_loop().create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    out.late = await pace(count, rate, send)
    async with asyncio.timeout(60):
        while tasks:
            await asyncio.gather(*list(tasks))
    return out


async def run(
    subscribers: int = 1000,
    rate: float = 20.0,
    duration: float = 20.0,
    client: ClientKind = "raw",
    procs: int = 2,
    sample_every: int = 10,
    keep_data: bool = False,
    server: ServerKind = "scribeline",
    metrics: bool = True,
) -> Result:
    count = max(1, round(rate * duration))
    params: dict[str, Any] = {
        "subscribers": subscribers,
        "calls": 1,
        "rate_per_s": rate,
        "duration_s": duration,
        "events": count,
        "publisher": "REST",
        "client": client,
        "client_procs": procs,
        "latency_sample_every": sample_every,
        "server": server,
        "metrics": metrics,
    }
    print_params("fanout", params)
    env = {
        "SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(max(100_000, subscribers)),
        "SCRIBELINE_METRICS_ENABLED": "true" if metrics else "false",
    }
    sid = "CAfanout"
    with make_server(server, env, keep_data) as node:
        async with Api(node.http, node.key) as api:
            await api.create_calls([sid])
            head = await api.append(sid, -1)  # one transcript of history
            run, published = await run_live(
                node,
                [sid] * subscribers,
                {sid: head},
                kind=client,
                procs=procs,
                sample_every=sample_every,
                publish=lambda: publish_rest(api, [sid], rate, count),
            )
    results = run.results()
    results["events_published"] = published.acked
    results["server_us_per_event"] = (
        round(run.window.server / published.acked * 1e6, 1) if published.acked else float("nan")
    )
    results["publish_errors"] = published.errors
    results["publisher_late_sends"] = published.late
    ack = sorted(published.ack_us)
    results["rest_append_ms_p50"] = ack[len(ack) // 2] / 1000 if ack else float("nan")
    warnings = run.window.warnings()
    if run.connect_failed:
        warnings.append(f"{run.connect_failed} subscribers failed to join: {run.connect_errors}")
    if results["deliveries"] != results["expected_deliveries"]:
        warnings.append("not every subscriber received every event")
    return {
        "scenario": "fanout",
        "params": params,
        "results": results,
        "targets": {
            "server_us_per_delivery": target(
                results["server_us_per_delivery"], TARGET_US_PER_DELIVERY, at_most=True
            )
        },
        "warnings": warnings,
        "server_log": node.problems(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--subscribers", type=int, default=1000, help="subscriber connections")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    parser.add_argument("--sample-every", type=int, default=10, help="latency sampling stride")
    add_client_options(parser, procs=2)
    parser.add_argument("--server", choices=SERVER_KINDS, default="scribeline", help="measured")
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="run the server with SCRIBELINE_METRICS_ENABLED=false",
    )
    args = parser.parse_args(argv)
    result: Result = run_async(
        lambda: run(
            args.subscribers,
            args.rate,
            args.duration,
            cast(ClientKind, args.client),
            args.procs,
            args.sample_every,
            args.keep_data,
            cast(ServerKind, args.server),
            not args.no_metrics,
        )
    )
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
