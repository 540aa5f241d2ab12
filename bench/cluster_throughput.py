"""cluster_throughput: deliveries per second of two nodes against one node, in one run.

A fan-out shape pushed past what the servers can deliver: a few calls with
many subscribers each, one producer WebSocket per call on node A sending at a
fixed total rate whose deliveries (rate x subscribers per call) exceed the
capacity. Two phases on PostgreSQL + Redis, so that only the number of nodes
differs: ``one_node`` (every subscriber on node A) and ``two_nodes`` (each
call's subscribers alternate between A and B). ``--sqlite`` adds one node on
SQLite and the memory broker, for reference.

Reported: deliveries/s (every delivery, over the time from the first send to
the last delivery), the ratio two nodes / one node, each node's CPU µs per
delivery, and a projection: the ratio if each node had a core of its own and
the clients ran elsewhere, ``2 x u1 / max(uA, uB)`` with ``u`` a node's CPU
µs per delivery (its deliveries being half of all). On this 2-core machine
the two nodes, PostgreSQL, Redis and the clients share the same cores, so the
measured ratio shows contention rather than scaling; both are reported.
Every subscriber checks its seqs; any gap, repeat, reorder or missing delivery
fails the run. Target: two nodes >= 1.6x one node.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from bench.backends import Services
from bench.common import Result, base_parser, emit, exit_status, print_params, target
from bench.nodes import NODE_NAMES, Load, Phase, compact, fail_on_broken_rules, run_phase
from bench.workers import run_async

__all__ = ["main", "run"]

TARGET_RATIO = 1.6


def _projected(one: dict[str, Any], two: dict[str, Any]) -> float:
    """Two nodes' capacity over one node's, from CPU per delivery, a core per node."""
    u1 = one["per_node"]["A"]["us_per_delivery"]
    u2 = max(two["per_node"][n]["us_per_delivery"] for n in NODE_NAMES[:2])
    return round(2 * u1 / u2, 2) if u2 else float("nan")


async def run(
    calls: int = 4,
    subscribers_per_call: int = 500,
    rate: float = 300.0,
    duration: float = 8.0,
    procs: int = 2,
    sqlite: bool = False,
    keep_data: bool = False,
) -> Result:
    load = Load(
        calls,
        subscribers_per_call,
        rate,
        duration,
        procs,
        sample_every=max(1, subscribers_per_call // 10),
        sid_prefix="CAthr",
        env={"SCRIBELINE_MAX_CONNECTIONS_PER_CALL": str(max(100_000, subscribers_per_call))},
        drain_timeout=120.0,
    )
    chosen = [Phase("one_node", "pg_redis", 1), Phase("two_nodes", "pg_redis", 2)]
    if sqlite:
        chosen.append(Phase("one_node_sqlite", "sqlite", 1))
    params: dict[str, Any] = {
        "calls": calls,
        "subscribers_per_call": subscribers_per_call,
        "rate_per_s": rate,
        "duration_s": duration,
        "events": load.events,
        "offered_deliveries_per_s": rate * subscribers_per_call,
        "publisher": f"producer WebSocket x{calls} (one per call), all on node A",
        "placement": "subscriber j of a call on node j % nodes",
        "phases": ", ".join(f"{p.name} ({p.nodes} x {p.backend})" for p in chosen),
        "client_procs": procs,
        "latency_sample_every": load.sample_every,
    }
    print_params("cluster_throughput", params)
    full: dict[str, Any] = {}
    with Services() as services:
        for phase in chosen:
            print(f"-- phase {phase.name}", flush=True)
            full[phase.name] = await run_phase(phase, services, load, keep_data)
    one, two = full["one_node"], full["two_nodes"]
    ratio = (
        round(two["deliveries_per_s"] / one["deliveries_per_s"], 2)
        if one["deliveries_per_s"]
        else float("nan")
    )
    results: dict[str, Any] = {name: compact(r) for name, r in full.items()}
    results["ratio_two_over_one"] = ratio
    results["projected_ratio_core_per_node"] = _projected(one, two)
    warnings = [f"{name}: {w}" for name, r in full.items() for w in r["warnings"]]
    for name, r in full.items():
        if r["deliveries_per_s"] >= 0.95 * r["offered_deliveries_per_s"]:
            warnings.append(f"{name}: not saturated (delivered what was offered): raise --rate")
    result: Result = {
        "scenario": "cluster_throughput",
        "params": params,
        "results": results,
        "phases": full,
        "targets": {"ratio_two_over_one": target(ratio, TARGET_RATIO, at_most=False)},
        "warnings": warnings,
    }
    fail_on_broken_rules(result, full)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--calls", type=int, default=4, help="calls (one producer each)")
    parser.add_argument(
        "--subscribers-per-call", type=int, default=500, help="subscribers per call"
    )
    parser.add_argument("--rate", type=float, default=300.0, help="events per second in total")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of publishing")
    parser.add_argument("--procs", type=int, default=2, help="subscriber worker processes")
    parser.add_argument("--sqlite", action="store_true", help="add a one-node SQLite phase")
    args = parser.parse_args(argv)
    result: Result = run_async(
        lambda: run(
            args.calls,
            args.subscribers_per_call,
            args.rate,
            args.duration,
            args.procs,
            args.sqlite,
            args.keep_data,
        )
    )
    emit(result, args.json)
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
