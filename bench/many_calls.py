"""many_calls: many concurrent calls, a few subscribers each, producers on WebSockets.

Events are spread round-robin over the calls at a fixed total rate, each sent
on its call's producer WebSocket (``/v1/ingest/{sid}``) without waiting for
the previous ack. Measures publish-to-deliver latency. Target: p99 at most 5 ms.

``many_calls_rest`` (:func:`run_rest`, ``--rest``) is the same load as a new
integrator sends it: one ``POST /v1/calls/{sid}/transcripts`` per event, pipelined,
round-robin over the calls. The reference server serves it too (it has no producer
WebSocket). Targets: p99 at most 5 ms, at most 250 µs of server CPU per event.

``--backend`` chooses Scribeline's store: ``sqlite`` (the default, with the
memory broker), ``pg_memory`` (PostgreSQL with the in-process broker) or
``pg_redis`` (PostgreSQL and Redis, as a cluster node runs), from
``bench.backends``; the reference server stores nothing and ignores it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any, cast

from bench.backends import Backend, Services
from bench.common import Api, Result, add_client_options, base_parser, emit, print_params, target
from bench.fanout import publish_rest
from bench.live import LiveRun, Published, pace, run_live
from bench.producers import Producer, open_producers, wait_acked
from bench.reference import SERVER_KINDS, ServerKind, make_server
from bench.server import HOST, Server
from bench.subscribers import ClientKind
from bench.workers import run_async

__all__ = ["main", "run", "run_rest"]

BACKENDS: tuple[Backend, ...] = ("sqlite", "pg_memory", "pg_redis")

TARGET_P99_MS = 5.0
TARGET_REST_US_PER_EVENT = 250.0
#: REST connections the publisher keeps open (enough that none waits for one at 1,000/s).
REST_CONNECTIONS = 128


async def publish_ws(
    producers: Sequence[Producer], published: Published, rate: float, count: int
) -> Published:
    def send(i: int) -> None:
        producers[i % len(producers)].send(i)

    published.late = await pace(count, rate, send)
    await wait_acked(producers, published, 60)
    return published


@contextlib.contextmanager
def _store(backend: Backend, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``env`` plus what puts a server on ``backend`` (its services up until the block ends)."""
    if backend == "sqlite":
        yield env
        return
    with Services() as services:
        yield {**env, **services.env(backend)}


async def run(
    calls: int = 1000,
    subscribers_per_call: int = 2,
    rate: float = 1000.0,
    duration: float = 20.0,
    client: ClientKind = "raw",
    procs: int = 2,
    keep_data: bool = False,
    backend: Backend = "sqlite",
) -> Result:
    count = max(1, round(rate * duration))
    params = _params(calls, subscribers_per_call, rate, duration, count, client, procs)
    params["publisher"] = f"producer WebSocket x{calls} (one per call)"
    params["backend"] = backend
    print_params("many_calls", params)
    env = {"SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(max(10, subscribers_per_call))}
    sids = [f"CAmany{i:05d}" for i in range(calls)]
    with _store(backend, env) as env, Server(env, keep_data) as server:
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
    return _result("many_calls", params, run, published, count, server, "ws_ack")


async def run_rest(
    calls: int = 1000,
    subscribers_per_call: int = 2,
    rate: float = 1000.0,
    duration: float = 20.0,
    client: ClientKind = "raw",
    procs: int = 2,
    keep_data: bool = False,
    server: ServerKind = "scribeline",
    backend: Backend = "sqlite",
) -> Result:
    count = max(1, round(rate * duration))
    params = _params(calls, subscribers_per_call, rate, duration, count, client, procs)
    params["publisher"] = f"REST, one transcript per POST, {REST_CONNECTIONS} connections"
    params["server"] = server
    if server == "scribeline":
        params["backend"] = backend
    else:
        backend = "sqlite"  # the reference stores nothing: no services to start
    print_params("many_calls_rest", params)
    env = {"SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(max(10, subscribers_per_call))}
    sids = [f"CAmany{i:05d}" for i in range(calls)]
    with _store(backend, env) as env, make_server(server, env, keep_data) as node:
        async with Api(node.http, node.key, REST_CONNECTIONS) as api:
            await api.create_calls(sids)
            run, published = await run_live(
                node,
                [sid for sid in sids for _ in range(subscribers_per_call)],
                dict.fromkeys(sids, node.initial_head),
                kind=client,
                procs=procs,
                sample_every=1,
                publish=lambda: publish_rest(api, sids, rate, count),
            )
    result = _result("many_calls_rest", params, run, published, count, node, "rest_append")
    result["targets"]["server_us_per_event"] = target(
        result["results"]["server_us_per_event"], TARGET_REST_US_PER_EVENT, at_most=True
    )
    return result


def _params(
    calls: int,
    subscribers_per_call: int,
    rate: float,
    duration: float,
    count: int,
    client: ClientKind,
    procs: int,
) -> dict[str, Any]:
    return {
        "calls": calls,
        "subscribers_per_call": subscribers_per_call,
        "rate_per_s": rate,
        "duration_s": duration,
        "events": count,
        "client": client,
        "client_procs": procs,
        "latency_sample_every": 1,
    }


def _result(
    name: str,
    params: dict[str, Any],
    run: LiveRun,
    published: Published,
    count: int,
    server: Server,
    ack: str,
) -> Result:
    results = run.results()
    results["events_published"] = published.acked
    results["server_us_per_event"] = (
        round(run.window.server / published.acked * 1e6, 1) if published.acked else float("nan")
    )
    results["publish_errors"] = published.errors
    results["publisher_late_sends"] = published.late
    acks = sorted(published.ack_us)
    results[f"{ack}_ms_p50"] = acks[len(acks) // 2] / 1000 if acks else float("nan")
    results[f"{ack}_ms_p99"] = acks[int(len(acks) * 0.99)] / 1000 if acks else float("nan")
    warnings = run.window.warnings()
    if run.connect_failed:
        warnings.append(f"{run.connect_failed} subscribers failed to join: {run.connect_errors}")
    if results["deliveries"] != results["expected_deliveries"]:
        warnings.append("not every subscriber received every event")
    if published.late > count * 0.01:
        warnings.append(f"publisher fell behind its schedule ({published.late} late sends)")
    return {
        "scenario": name,
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
    parser.add_argument("--rest", action="store_true", help="publish over REST (many_calls_rest)")
    parser.add_argument(
        "--server", choices=SERVER_KINDS, default="scribeline", help="measured (--rest only)"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="sqlite", help="Scribeline's store (see above)"
    )
    add_client_options(parser, procs=2)
    args = parser.parse_args(argv)
    backend = cast(Backend, args.backend)
    if args.rest:
        result: Result = run_async(
            lambda: run_rest(
                args.calls,
                args.subscribers_per_call,
                args.rate,
                args.duration,
                cast(ClientKind, args.client),
                args.procs,
                args.keep_data,
                cast(ServerKind, args.server),
                backend,
            )
        )
        emit(result, args.json)
        return 0
    if args.server != "scribeline":
        parser.error("the reference has no producer WebSocket: use --rest")
    result = run_async(
        lambda: run(
            args.calls,
            args.subscribers_per_call,
            args.rate,
            args.duration,
            cast(ClientKind, args.client),
            args.procs,
            args.keep_data,
            backend,
        )
    )
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
