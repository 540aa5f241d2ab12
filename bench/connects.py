"""connects: authenticated WebSocket connects per second.

Each connect is a full cycle on ``/live-transcript/{sid}?token=KEY``: TCP
connect, upgrade, wait for ``connection_established``, then the closing
handshake until the server has closed the TCP connection. Workers run their
share of the cycles with a fixed number in flight. Target: at least 2,500/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

from bench import rawws
from bench.common import Api, Result, base_parser, emit, print_params, target
from bench.metrics import latency_summary
from bench.reference import SERVER_KINDS, ServerKind, make_server
from bench.server import HOST
from bench.workers import WorkerPool, measured, pipe_recv, raise_nofile, run_async, share

__all__ = ["main", "run"]

TARGET_PER_S = 4000.0


@dataclass(frozen=True, slots=True)
class ConnectJob:
    host: str
    port: int
    token: str
    sids: tuple[str, ...]
    count: int
    concurrency: int


def connect_worker(pipe: Connection, job: ConnectJob) -> None:
    raise_nofile()
    with contextlib.suppress(EOFError, KeyboardInterrupt, BrokenPipeError):
        run_async(lambda: _connects(pipe, job))


async def _one(job: ConnectJob, sid: str) -> int:
    """One connect cycle; the µs until ``connection_established`` arrived."""
    loop = asyncio.get_running_loop()
    first: asyncio.Future[bytes] = loop.create_future()

    def on_text(payload: bytes, now_ns: int) -> None:
        if not first.done():
            first.set_result(payload)

    began = time.perf_counter_ns()
    async with asyncio.timeout(30):
        ws = await rawws.connect(
            job.host, job.port, f"/live-transcript/{sid}?token={job.token}", on_text
        )
        try:
            if b'"connection_established"' not in await first:
                raise RuntimeError(f"unexpected first message {(await first)[:80]!r}")
            established = time.perf_counter_ns()
            await ws.close()
        finally:
            ws.abort()
    return (established - began) // 1000


async def _connects(pipe: Connection, job: ConnectJob) -> None:
    pipe.send({"event": "ready"})
    await pipe_recv(pipe)  # go
    errors: Counter[str] = Counter()
    latencies: list[int] = []
    remaining = iter(range(job.count))

    async def lane() -> None:
        for i in remaining:
            try:
                latencies.append(await _one(job, job.sids[i % len(job.sids)]))
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:120]] += 1

    started = time.time()
    await asyncio.gather(*(lane() for _ in range(job.concurrency)))
    ended = time.time()
    pipe.send(
        {
            "event": "result",
            "ok": len(latencies),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(5)),
            "started": started,
            "ended": ended,
            "latency_us": latencies,
        }
    )
    await pipe_recv(pipe)  # exit


async def run(
    total: int = 10_000,
    concurrency: int = 200,
    procs: int = 2,
    calls: int = 1,
    keep_data: bool = False,
    server: ServerKind = "scribeline",
) -> Result:
    params: dict[str, Any] = {
        "connects": total,
        "concurrency": concurrency,
        "client_procs": procs,
        "calls": calls,
        "client": "raw",
        "server": server,
    }
    print_params("connects", params)
    env = {"SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(max(100_000, concurrency))}
    sids = tuple(f"CAconn{i:04d}" for i in range(calls))
    with make_server(server, env, keep_data) as node:
        async with Api(node.http, node.key) as api:
            await api.create_calls(sids)
        jobs = [
            ConnectJob(
                HOST,
                node.port,
                node.key,
                sids,
                share(total, procs, p),
                share(concurrency, procs, p),
            )
            for p in range(procs)
        ]
        done, window = await measured(WorkerPool(connect_worker, jobs), node.pid)
    ok = sum(int(d["ok"]) for d in done)
    failed = sum(int(d["failed"]) for d in done)
    seconds = max(float(d["ended"]) for d in done) - min(float(d["started"]) for d in done)
    errors: Counter[str] = Counter()
    for d in done:
        errors.update(d["errors"])
    results: dict[str, Any] = {
        "ok": ok,
        "failed": failed,
        "errors": dict(errors.most_common(5)),
        "seconds": round(seconds, 3),
        "connects_per_s": round(ok / seconds, 1) if seconds > 0 else float("nan"),
        "server_us_per_connect": round(window.server / ok * 1e6, 1) if ok else float("nan"),
        "time_to_established": latency_summary(s for d in done for s in d["latency_us"]),
        "cpu": window.as_dict(),
    }
    warnings = window.warnings()
    if failed:
        warnings.append(f"{failed} connects failed")
    return {
        "scenario": "connects",
        "params": params,
        "results": results,
        "targets": {
            "connects_per_s": target(results["connects_per_s"], TARGET_PER_S, at_most=False)
        },
        "warnings": warnings,
        "server_log": node.problems(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--connects", type=int, default=10_000, help="connect cycles in total")
    parser.add_argument("--concurrency", type=int, default=200, help="cycles in flight")
    parser.add_argument("--procs", type=int, default=2, help="client worker processes")
    parser.add_argument("--calls", type=int, default=1, help="calls the connects spread over")
    parser.add_argument("--server", choices=SERVER_KINDS, default="scribeline", help="measured")
    args = parser.parse_args(argv)
    result: Result = run_async(
        lambda: run(
            args.connects,
            args.concurrency,
            args.procs,
            args.calls,
            args.keep_data,
            cast(ServerKind, args.server),
        )
    )
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
