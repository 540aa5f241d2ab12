"""cluster: publish-to-deliver latency across two nodes, against one node, in one run.

Three phases on the same load (``many_calls``' shape: 1,000 calls, 2
subscribers each, 1,000 events/s in total round-robin over one producer
WebSocket per call, the producers all on node A, 8 s):

1. ``two_nodes``: two ``scribeline serve`` processes on one PostgreSQL database
   and one Redis (one token secret); each call's first subscriber is on node A
   (same node as its producer), its second on node B (the event crosses Redis);
2. ``one_node_pg``: one node on PostgreSQL, with the Redis broker by default
   (``--single-broker memory`` for the in-process one);
3. ``one_node_sqlite``: one node on SQLite and the memory broker (``many_calls``).

Reported per phase: publish-to-deliver p50/p99 (same-node and cross-node
apart), deliveries/s, each node's CPU µs per delivery (psutil, per process),
PostgreSQL's and Redis's CPU. Latency includes the durable commit. Every
subscriber checks its seqs; any gap, repeat, reorder or missing delivery fails
the run. Target: cross-node p99 at most 10 ms.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from bench.backends import Services
from bench.common import Result, base_parser, chosen, emit, exit_status, print_params, target
from bench.nodes import Load, Phase, compact, fail_on_broken_rules, run_phase
from bench.workers import run_async

__all__ = ["main", "run"]

TARGET_CROSS_P99_MS = 10.0
PHASES = ("two_nodes", "one_node_pg", "one_node_sqlite")


def phases(single_broker: str) -> dict[str, Phase]:
    return {
        "two_nodes": Phase("two_nodes", "pg_redis", 2),
        "one_node_pg": Phase(
            "one_node_pg", "pg_redis" if single_broker == "redis" else "pg_memory", 1
        ),
        "one_node_sqlite": Phase("one_node_sqlite", "sqlite", 1),
    }


async def run(
    calls: int = 1000,
    subscribers_per_call: int = 2,
    rate: float = 1000.0,
    duration: float = 8.0,
    procs: int = 2,
    single_broker: str = "redis",
    only: Sequence[str] = PHASES,
    keep_data: bool = False,
) -> Result:
    load = Load(
        calls,
        subscribers_per_call,
        rate,
        duration,
        procs,
        sid_prefix="CAclu",
        env={"SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(max(10, subscribers_per_call))},
    )
    chosen = [phases(single_broker)[name] for name in only]
    params: dict[str, Any] = {
        "calls": calls,
        "subscribers_per_call": subscribers_per_call,
        "rate_per_s": rate,
        "duration_s": duration,
        "events": load.events,
        "publisher": f"producer WebSocket x{calls} (one per call), all on node A",
        "placement": "subscriber j of a call on node j % nodes",
        "phases": ", ".join(f"{p.name} ({p.nodes} x {p.backend})" for p in chosen),
        "client_procs": procs,
        "latency_sample_every": 1,
    }
    print_params("cluster", params)
    full: dict[str, Any] = {}
    with Services() as services:
        for phase in chosen:
            print(f"-- phase {phase.name}", flush=True)
            full[phase.name] = await run_phase(phase, services, load, keep_data)
    result: Result = {
        "scenario": "cluster",
        "params": params,
        "results": {name: compact(r) for name, r in full.items()},
        "phases": full,
        "targets": {},
        "warnings": [f"{name}: {w}" for name, r in full.items() for w in r["warnings"]],
    }
    if "two_nodes" in full:
        cross = full["two_nodes"]["latency_cross_node"]["p99_ms"]
        result["targets"]["cross_node_p99_ms"] = target(cross, TARGET_CROSS_P99_MS, at_most=True)
    fail_on_broken_rules(result, full)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="concurrent calls")
    parser.add_argument("--subscribers-per-call", type=int, default=2, help="subscribers per call")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second in total")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of publishing")
    parser.add_argument("--procs", type=int, default=2, help="subscriber worker processes")
    parser.add_argument(
        "--single-broker",
        choices=("redis", "memory"),
        default="redis",
        help="the broker of the one-node PostgreSQL phase",
    )
    parser.add_argument("--only", default=",".join(PHASES), help="comma list of phases")
    args = parser.parse_args(argv)
    only = chosen(parser, args.only, PHASES, "phases")
    result: Result = run_async(
        lambda: run(
            args.calls,
            args.subscribers_per_call,
            args.rate,
            args.duration,
            args.procs,
            args.single_broker,
            only,
            args.keep_data,
        )
    )
    emit(result, args.json)
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
