"""ingest: durable transcript appends per second.

1. One producer WebSocket (``/v1/ingest/{sid}``) sends M transcripts pipelined
   (flow-controlled only by TCP) and counts the in-order acks; an ack means the
   event is stored. Target: at least 5,000 appends/s.
2. For comparison, REST ``POST /v1/calls/{sid}/transcripts`` with a fixed number of
   requests in flight, from worker processes.

``--backends`` chooses the store: ``sqlite`` (the default, with the memory
broker), ``pg_redis`` (PostgreSQL and Redis from ``tests.services``, as a cluster
node runs) or ``pg_memory``; several, comma-separated, run one after the other
in the same run and are reported side by side (``ingest_backends``). Acks of the
producer WebSocket must come back in order (seq + 1 each); any that does not, or
any append left unacknowledged, fails the run.

The server limits the messages per second a connection may send (producer
WebSockets included) and closes a connection past it. To measure append
throughput rather than that limit, this scenario raises the limits by default;
``--keep-message-limit`` runs with the server's defaults instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

import orjson

from bench.backends import Backend, Services
from bench.common import (
    Api,
    Result,
    base_parser,
    chosen,
    emit,
    exit_status,
    print_params,
    target,
    transcript,
)
from bench.live import Published
from bench.metrics import CpuMeter, CpuWindow, latency_summary
from bench.producers import open_producers, wait_acked
from bench.server import HOST, Server
from bench.workers import WorkerPool, measured, pipe_recv, run_async, share

__all__ = ["main", "run", "run_backends"]

TARGET_PER_S = 5000.0
BACKENDS: tuple[Backend, ...] = ("sqlite", "pg_redis", "pg_memory")
#: Server settings that cap a connection's messages per second (unknown ones are ignored).
RATE_LIMIT_SETTINGS = (
    "SCRIBELINE_CLIENT_MESSAGES_PER_SECOND",
    "SCRIBELINE_PRODUCER_MESSAGES_PER_SECOND",
)


async def _ws_part(
    server: Server, sid: str, messages: int, chunk: int, services: Services | None
) -> dict[str, Any]:
    published = Published()
    (producer,) = await open_producers(HOST, server.port, server.key, [sid], published, 1)
    assert producer.ws is not None
    payloads = [orjson.dumps(transcript(i)) for i in range(messages)]
    meter = CpuMeter(server.pid, [os.getpid()])  # the producer runs in this process
    before = services.cpu() if services else {}
    meter.start()
    began = time.perf_counter()
    try:
        for start in range(0, messages, chunk):
            producer.send_many(payloads[start : start + chunk])
            await producer.ws.drain()
            if producer.closed:
                break
        await wait_acked([producer], published, 120)
    finally:
        seconds = time.perf_counter() - began
        window = meter.stop()
        producer.ws.abort()
    window, service_cores = services.apart(window, before) if services else (window, {})
    return _summary(
        "ws",
        published.acked,
        published.sent - published.acked,
        published.errors,
        seconds,
        window,
        published.ack_us,
        {
            "misordered_acks": published.misordered,
            "close_code": producer.ws.close_code,
            **({"service_cores": service_cores} if services else {}),
        },
    )


@dataclass(frozen=True, slots=True)
class RestJob:
    base_url: str
    token: str
    sid: str
    count: int
    concurrency: int


def rest_worker(pipe: Connection, job: RestJob) -> None:
    with contextlib.suppress(EOFError, KeyboardInterrupt, BrokenPipeError):
        run_async(lambda: _rest(pipe, job))


async def _rest(pipe: Connection, job: RestJob) -> None:
    errors: Counter[str] = Counter()
    latencies: list[int] = []
    remaining = iter(range(job.count))
    async with Api(job.base_url, job.token, job.concurrency) as api:

        async def lane() -> None:
            for i in remaining:
                began = time.perf_counter_ns()
                try:
                    await api.append(job.sid, i)
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                    continue
                latencies.append((time.perf_counter_ns() - began) // 1000)

        pipe.send({"event": "ready"})
        await pipe_recv(pipe)  # go
        started = time.time()
        await asyncio.gather(*(lane() for _ in range(job.concurrency)))
        ended = time.time()
    pipe.send(
        {
            "event": "result",
            "ok": len(latencies),
            "errors": dict(errors),
            "started": started,
            "ended": ended,
            "latency_us": latencies,
        }
    )
    await pipe_recv(pipe)  # exit


async def _rest_part(
    server: Server,
    sid: str,
    requests: int,
    concurrency: int,
    procs: int,
    services: Services | None,
) -> dict[str, Any]:
    procs = max(1, min(procs, concurrency))
    jobs = [
        RestJob(
            server.http,
            server.key,
            sid,
            share(requests, procs, p),
            share(concurrency, procs, p),
        )
        for p in range(procs)
    ]
    before = services.cpu() if services else {}
    done, window = await measured(WorkerPool(rest_worker, jobs), server.pid)
    window, service_cores = services.apart(window, before) if services else (window, {})
    errors: Counter[str] = Counter()
    for d in done:
        errors.update(d["errors"])
    seconds = max(float(d["ended"]) for d in done) - min(float(d["started"]) for d in done)
    ok = sum(int(d["ok"]) for d in done)
    latencies = [s for d in done for s in d["latency_us"]]
    extra = {"service_cores": service_cores} if services else {}
    return _summary(
        "rest", ok, sum(errors.values()), dict(errors), seconds, window, latencies, extra
    )


def _summary(
    name: str,
    ok: int,
    failed: int,
    errors: dict[str, int],
    seconds: float,
    window: CpuWindow,
    latencies: Sequence[int],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        f"{name}_appends": ok,
        f"{name}_failed": failed,
        f"{name}_errors": errors,
        f"{name}_seconds": round(seconds, 3),
        f"{name}_appends_per_s": round(ok / seconds, 1) if seconds > 0 else float("nan"),
        f"{name}_server_us_per_append": round(window.server / ok * 1e6, 1) if ok else float("nan"),
        f"{name}_ack_latency": latency_summary(latencies),
        f"{name}_cpu": window.as_dict(),
        **{f"{name}_{k}": v for k, v in (extra or {}).items()},
        f"_{name}_warnings": window.warnings(),
    }


async def run(
    messages: int = 50_000,
    rest_requests: int = 10_000,
    rest_concurrency: int = 64,
    procs: int = 2,
    chunk: int = 500,
    keep_message_limit: bool = False,
    keep_data: bool = False,
    backend: Backend = "sqlite",
) -> Result:
    params: dict[str, Any] = {
        "backend": backend,
        "ws_messages": messages,
        "ws_connections": 1,
        "rest_requests": rest_requests,
        "rest_concurrency": rest_concurrency,
        "rest_client_procs": procs,
        "client_messages_per_second": "server default" if keep_message_limit else "raised",
    }
    print_params("ingest", params)
    env = {} if keep_message_limit else dict.fromkeys(RATE_LIMIT_SETTINGS, "1e9")
    results: dict[str, Any] = {}
    services: Services | None = None
    with contextlib.ExitStack() as stack:
        if backend != "sqlite":
            services = stack.enter_context(Services())
            env |= services.env(backend)
        server = stack.enter_context(Server(env, keep_data))
        async with Api(server.http, server.key) as api:
            await api.create_calls(["CAingestws", "CAingestrest"])
        if messages:
            results.update(await _ws_part(server, "CAingestws", messages, chunk, services))
        if rest_requests:
            results.update(
                await _rest_part(
                    server, "CAingestrest", rest_requests, rest_concurrency, procs, services
                )
            )
        if services is not None:
            for name, sid in (("ws", "CAingestws"), ("rest", "CAingestrest")):
                stored, commits = services.transcript_batches(env["SCRIBELINE_DATABASE_URL"], sid)
                if commits:
                    results[f"{name}_transcripts_per_commit"] = round(stored / commits, 1)
    warnings = [w for k in list(results) if k.startswith("_") for w in results.pop(k)]
    failures = []
    if results.get("ws_failed"):
        failures.append(f"{results['ws_failed']} WebSocket appends were not acknowledged")
    if results.get("ws_misordered_acks"):
        failures.append(f"{results['ws_misordered_acks']} WebSocket acks out of order")
    targets = {}
    if messages:
        targets["ws_appends_per_s"] = target(results["ws_appends_per_s"], TARGET_PER_S, False)
        if failures:
            targets["ws_appends_per_s"]["met"] = False  # every message stored, in order
    result: Result = {
        "scenario": "ingest",
        "params": params,
        "results": results,
        "targets": targets,
        "warnings": warnings + failures,
        "server_log": server.problems(),
    }
    if failures:
        result["error"] = "; ".join(failures)
    return result


async def run_backends(backends: Sequence[Backend], **options: Any) -> Result:
    """``run`` once per backend, one after the other; the results side by side."""
    parts = {b: await run(backend=b, **options) for b in backends}
    first = next(iter(parts.values()))
    result: Result = {
        "scenario": "ingest_backends",
        "params": {**first["params"], "backend": ", ".join(backends)},
        "results": {f"{b}_{k}": v for b, r in parts.items() for k, v in r["results"].items()},
        "targets": {f"{b}_{k}": t for b, r in parts.items() for k, t in r["targets"].items()},
        "warnings": [f"{b}: {w}" for b, r in parts.items() for w in r["warnings"]],
        "server_log": {b: r["server_log"] for b, r in parts.items()},
    }
    errors = [f"{b}: {r['error']}" for b, r in parts.items() if r.get("error")]
    if errors:
        result["error"] = "; ".join(errors)
    return result


def ws_rate(result: Result, backend: str) -> float:
    """A backend's WebSocket appends/s in a result of ``run`` or ``run_backends``."""
    r = result.get("results", {})
    value = r.get(f"{backend}_ws_appends_per_s", r.get("ws_appends_per_s", math.nan))
    return float(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--messages", type=int, default=50_000, help="WebSocket appends (0: skip)")
    parser.add_argument("--rest-requests", type=int, default=10_000, help="REST appends (0: skip)")
    parser.add_argument("--rest-concurrency", type=int, default=64, help="REST requests in flight")
    parser.add_argument("--procs", type=int, default=2, help="REST client worker processes")
    parser.add_argument("--chunk", type=int, default=500, help="WS messages written per drain")
    parser.add_argument(
        "--keep-message-limit",
        action="store_true",
        help="keep the server's default limits on messages per second per connection",
    )
    parser.add_argument(
        "--backends",
        default="sqlite",
        help="comma list of stores to run on, in turn: sqlite, pg_redis, pg_memory",
    )
    args = parser.parse_args(argv)
    backends = chosen(parser, args.backends, BACKENDS, "backends", required=True)
    options: dict[str, Any] = {
        "messages": args.messages,
        "rest_requests": args.rest_requests,
        "rest_concurrency": args.rest_concurrency,
        "procs": args.procs,
        "chunk": args.chunk,
        "keep_message_limit": args.keep_message_limit,
        "keep_data": args.keep_data,
    }
    if len(backends) == 1:
        result: Result = run_async(lambda: run(**options, backend=cast(Backend, backends[0])))
    else:
        result = run_async(lambda: run_backends(cast(list[Backend], backends), **options))
    emit(result, args.json)
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
