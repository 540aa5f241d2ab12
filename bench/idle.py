"""idle: server memory per idle, authenticated subscriber.

A warm-up set of subscribers connects first (so one-time allocations are not
counted), then the server's RSS is read; then N more subscribers connect and
receive their history, and after a short settle the RSS is read again.
Result: (RSS after - RSS before) / N. Target: at most 12 KB per connection.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

from bench.common import Api, Result, add_client_options, base_parser, emit, print_params, target
from bench.reference import SERVER_KINDS, ServerKind, make_server
from bench.server import HOST, Server
from bench.subscribers import ClientKind, SubscribeJob, subscribe_worker
from bench.workers import Message, WorkerPool, raise_nofile, run_async

__all__ = ["main", "run"]

TARGET_KB = 8.0


def _jobs(
    server: Server, kind: ClientKind, sids: Sequence[str], heads: dict[str, int], procs: int
) -> list[SubscribeJob]:
    procs = max(1, min(procs, len(sids)))
    return [
        SubscribeJob(
            host=HOST,
            port=server.port,
            token=server.key,
            kind=kind,
            sids=tuple(sids[p::procs]),
            heads=heads,
            concurrency=100,
            ready_timeout=60,
        )
        for p in range(procs)
    ]


async def _connect(jobs: list[SubscribeJob]) -> tuple[WorkerPool, list[Message]]:
    pool = WorkerPool(subscribe_worker, jobs)
    pool.start()
    try:
        async with asyncio.timeout(600):
            return pool, await pool.gather()
    except BaseException:
        pool.stop()
        raise


async def _settled_rss(server: Server, seconds: float) -> int:
    """The median of a few RSS readings over ``seconds``."""
    readings = []
    for _ in range(5):
        await asyncio.sleep(seconds / 5)
        readings.append(server.rss())
    return sorted(readings)[len(readings) // 2]


async def run(
    connections: int = 5000,
    calls: int = 100,
    history: int = 3,
    warmup: int = 200,
    client: ClientKind = "raw",
    procs: int = 2,
    keep_data: bool = False,
    server: ServerKind = "scribeline",
) -> Result:
    params: dict[str, Any] = {
        "connections": connections,
        "calls": calls,
        "history_events_per_call": history + (server == "scribeline"),  # + its status event
        "warmup_connections": warmup,
        "client": client,
        "client_procs": procs,
        "server": server,
    }
    print_params("idle", params)
    limit = raise_nofile()
    if connections + warmup + 100 > limit:
        raise SystemExit(f"open-files limit {limit} is too low for {connections} connections")
    env = {"SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(connections + warmup)}
    sids = [f"CAidle{i:05d}" for i in range(calls)]
    pools: list[WorkerPool] = []
    with make_server(server, env, keep_data) as node:
        async with Api(node.http, node.key) as api:
            await api.create_calls(sids)
            heads = dict.fromkeys(sids, node.initial_head)
            for i in range(history):
                seqs = await asyncio.gather(*(api.append(sid, i) for sid in sids))
                heads = dict(zip(sids, seqs, strict=True))
        try:
            warm_sids = [sids[i % calls] for i in range(warmup)]
            pool, warm = await _connect(_jobs(node, client, warm_sids, heads, 1))
            pools.append(pool)
            rss_start = node.rss()
            rss_before = await _settled_rss(node, 2.0)
            began = time.monotonic()
            conn_sids = [sids[i % calls] for i in range(connections)]
            pool, ready = await _connect(_jobs(node, client, conn_sids, heads, procs))
            pools.append(pool)
            connect_seconds = time.monotonic() - began
            rss_after = await _settled_rss(node, 3.0)
            fds = node.num_fds()
            # Stop the server while every subscriber is still connected (each gets 1001).
            await asyncio.to_thread(node.stop)
        finally:
            for pool in pools:
                pool.stop()
    connected = sum(int(r["connected"]) for r in ready)
    failed = sum(int(r["failed"]) for r in ready)
    per_conn_kb = (rss_after - rss_before) / max(1, connected) / 1024
    warnings = []
    if failed or connected < connections:
        errors = [r["errors"] for r in ready]
        warnings.append(f"{failed} of {connections} subscribers failed to join: {errors}")
    if node.killed:
        warnings.append("the server did not stop within 20 s of SIGTERM and was killed")
    if int(warm[0]["connected"]) < warmup:
        warnings.append("some warm-up subscribers failed to join")
    results: dict[str, Any] = {
        "connected": connected,
        "failed": failed,
        "connect_seconds": round(connect_seconds, 2),
        "rss_at_warmup_mb": round(rss_start / 2**20, 1),
        "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        "server_fds": fds,
        "kb_per_connection": round(per_conn_kb, 2),
        "server_stop_seconds": node.stop_seconds,
    }
    return {
        "scenario": "idle",
        "params": params,
        "results": results,
        "targets": {"kb_per_connection": target(results["kb_per_connection"], TARGET_KB, True)},
        "warnings": warnings,
        "server_log": node.problems(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--connections", type=int, default=5000, help="idle subscribers (N)")
    parser.add_argument("--calls", type=int, default=100, help="calls they spread over")
    parser.add_argument("--history", type=int, default=3, help="transcripts per call before")
    parser.add_argument("--warmup", type=int, default=200, help="subscribers before the baseline")
    add_client_options(parser, procs=2)
    parser.add_argument("--server", choices=SERVER_KINDS, default="scribeline", help="measured")
    args = parser.parse_args(argv)
    result: Result = run_async(
        lambda: run(
            args.connections,
            args.calls,
            args.history,
            args.warmup,
            cast(ClientKind, args.client),
            args.procs,
            args.keep_data,
            cast(ServerKind, args.server),
        )
    )
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
