"""One phase of a cluster scenario: N nodes on one backend, producers on node A,
subscribers spread over the nodes, measured together.

A phase starts its nodes (``scribeline serve`` each; the first creates the
organization and key, the others share its database and key), creates the
calls through node A, opens one producer WebSocket per call on node A, and
connects the subscribers from worker processes: subscriber ``j`` of each call
goes to node ``j % N``, so with two nodes and two subscribers a call has one
subscriber beside its producer and one a broker hop away. Each client worker
talks to one node only, so every result is known per node. Then the window
opens, the producers send at a fixed total rate, every subscriber waits for
its call's last seq, and the window closes.

Every subscriber checks its seqs (a gap, a repeat or a step back counts) and
its count against what was stored; the phase lists each failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.backends import Backend, Services, sqlite_env
from bench.cluster_meter import ClusterMeter, ClusterWindow, PidLister
from bench.common import Api
from bench.live import Published
from bench.many_calls import publish_ws
from bench.metrics import latency_summary
from bench.producers import Producer, open_producers
from bench.server import HOST, Server
from bench.subscribers import SubscribeJob, subscribe_worker
from bench.workers import Message, WorkerPool

__all__ = ["NODE_NAMES", "Load", "Phase", "compact", "fail_on_broken_rules", "run_phase"]

NODE_NAMES = "ABCDEFGH"
BACKEND_TEXT = {
    "sqlite": "SQLite + memory broker",
    "pg_memory": "PostgreSQL + memory broker",
    "pg_redis": "PostgreSQL + Redis broker",
}


@dataclass(frozen=True, slots=True)
class Phase:
    """What runs: ``nodes`` server processes on ``backend``."""

    name: str
    backend: Backend
    nodes: int = 1


@dataclass(frozen=True, slots=True)
class Load:
    """What the clients do in every phase of a scenario."""

    calls: int
    subscribers_per_call: int
    rate: float  # events per second in total, round-robin over the calls
    duration: float
    procs: int = 2  # subscriber worker processes in all (at least one per node)
    sample_every: int = 1
    sid_prefix: str = "CAnode"
    env: dict[str, str] = field(default_factory=dict)
    drain_timeout: float = 60.0

    @property
    def events(self) -> int:
        return max(1, round(self.rate * self.duration))


@dataclass(slots=True)
class _Outcome:
    """A phase's raw material before it is summed up."""

    phase: Phase
    published: Published
    producers: list[Producer]
    ready: list[Message]
    done: list[Message]
    job_nodes: list[int]  # the node each worker talked to
    window: ClusterWindow
    started_ns: int
    logs: dict[str, dict[str, object]] = field(default_factory=dict)


def _jobs(nodes: Sequence[Server], load: Load, sids: Sequence[str]) -> tuple[list[Any], list[int]]:
    """Subscriber jobs, each bound to one node; and which node each job uses."""
    n = len(nodes)
    per_node = [
        [sid for sid in sids for j in range(load.subscribers_per_call) if j % n == k]
        for k in range(n)
    ]
    procs = max(1, load.procs // n)
    jobs: list[SubscribeJob] = []
    job_nodes: list[int] = []
    for k, node in enumerate(nodes):
        for p in range(procs):
            share = tuple(per_node[k][p::procs])
            if not share:
                continue
            jobs.append(
                SubscribeJob(
                    host=HOST,
                    port=node.port,
                    token=node.key,
                    kind="raw",
                    sids=share,
                    heads=dict.fromkeys(sids, 1),  # history: the call's first status event
                    first_index=k * procs + p,
                    stride=n * procs,
                    sample_every=load.sample_every,
                )
            )
            job_nodes.append(k)
    return jobs, job_nodes


async def _measure(
    nodes: Sequence[Server],
    services: dict[str, PidLister],
    load: Load,
    sids: Sequence[str],
    publish: Callable[[], Awaitable[Published]],
) -> tuple[list[Message], list[Message], list[int], ClusterWindow, int, Published]:
    jobs, job_nodes = _jobs(nodes, load, sids)
    pool = WorkerPool(subscribe_worker, jobs)
    pool.start()
    try:
        async with asyncio.timeout(300):
            ready = await pool.gather()
        meter = ClusterMeter(
            {NODE_NAMES[k]: node.pid for k, node in enumerate(nodes)},
            services,
            [os.getpid(), *pool.pids],
        )
        meter.start()
        started_ns = time.time_ns()
        published = await publish()
        pool.broadcast({"cmd": "finish", "last": published.last, "timeout": load.drain_timeout})
        async with asyncio.timeout(load.drain_timeout + 30):
            done = await pool.gather()
        window = meter.stop()
    finally:
        pool.stop()
    return ready, done, job_nodes, window, started_ns, published


async def run_phase(
    phase: Phase, services: Services | None, load: Load, keep_data: bool = False
) -> dict[str, Any]:
    """Run one phase; its results (``failures`` lists what broke the rules)."""
    env = {**(services.env(phase.backend) if services else sqlite_env()), **load.env}
    listers: dict[str, PidLister] = {}
    if services is not None and phase.backend != "sqlite":
        listers["postgres"] = services.postgres_pids
        if phase.backend == "pg_redis":
            listers["redis"] = services.redis_pids
    sids = [f"{load.sid_prefix}{i:05d}" for i in range(load.calls)]
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(Server(env, keep_data))
        nodes = [first] + [
            stack.enter_context(Server(env, keep_data, key=first.key))
            for _ in range(phase.nodes - 1)
        ]
        async with Api(first.http, first.key) as api:
            await api.create_calls(sids)
        published = Published()
        producers = await open_producers(HOST, first.port, first.key, sids, published, 100)
        try:
            ready, done, job_nodes, window, started_ns, published = await _measure(
                nodes,
                listers,
                load,
                sids,
                lambda: publish_ws(producers, published, load.rate, load.events),
            )
        finally:
            for producer in producers:
                if producer.ws is not None:
                    producer.ws.abort()
        outcome = _Outcome(phase, published, producers, ready, done, job_nodes, window, started_ns)
    # The nodes have stopped: their logs are complete.
    outcome.logs = {NODE_NAMES[k]: node.problems() for k, node in enumerate(nodes)}
    results = summarize(outcome, load)
    if services is not None and phase.backend != "sqlite":
        events, transactions = services.transcript_batches(env["SCRIBELINE_DATABASE_URL"])
        results["postgres_transactions"] = transactions
        results["transcripts_per_transaction"] = (
            round(events / transactions, 2) if transactions else float("nan")
        )
    return results


def _total(workers: Sequence[Message], key: str) -> int:
    return sum(int(w[key]) for w in workers)


def _per_second(count: int, started_ns: int, workers: Sequence[Message]) -> float:
    last_ns = max((int(w["last_ns"]) for w in workers), default=0)
    return round(count / ((last_ns - started_ns) / 1e9), 1) if last_ns > started_ns else 0.0


def _us(cpu_seconds: float, count: int) -> float:
    return round(cpu_seconds / count * 1e6, 2) if count else float("nan")


def summarize(o: _Outcome, load: Load) -> dict[str, Any]:
    """The phase's figures, per node and in all, and the rules it broke."""
    w, pub = o.window, o.published
    deliveries = _total(o.done, "deliveries")
    per_node: dict[str, Any] = {}
    samples: dict[str, list[int]] = {}
    for k in range(o.phase.nodes):
        name = NODE_NAMES[k]
        mine = [d for d, node in zip(o.done, o.job_nodes, strict=True) if node == k]
        joined = [r for r, node in zip(o.ready, o.job_nodes, strict=True) if node == k]
        samples[name] = [s for d in mine for s in d["samples_us"]]
        count = _total(mine, "deliveries")
        per_node[name] = {
            "subscribers": _total(joined, "connected"),
            "deliveries": count,
            "cpu_cores": w.cores_of(w.nodes[name]),
            "main_thread_cores": w.cores_of(w.node_main_threads[name]),
            "us_per_delivery": _us(w.nodes[name], count),
        }
    a = per_node[NODE_NAMES[0]]
    a["us_per_event"] = _us(w.nodes[NODE_NAMES[0]], pub.acked)
    nodes_cpu = sum(w.nodes.values())
    services_cpu = sum(w.services.values())
    ack = sorted(pub.ack_us)
    codes: dict[str, int] = {}
    for d in o.done:
        for code, n in d["close_codes"].items():
            codes[code] = codes.get(code, 0) + n
    results: dict[str, Any] = {
        "nodes": o.phase.nodes,
        "backend": BACKEND_TEXT[o.phase.backend],
        "subscribers": _total(o.ready, "connected"),
        "subscribe_failures": _total(o.ready, "failed"),
        "events_published": pub.acked,
        "deliveries": deliveries,
        "expected_deliveries": _total(o.done, "expected"),
        "subscribers_behind": _total(o.done, "behind"),
        "gaps": _total(o.done, "gaps"),
        "duplicates_or_reordered": _total(o.done, "duplicates"),
        "closed_by_server": codes,
        "deliveries_per_s": _per_second(deliveries, o.started_ns, o.done),
        "offered_deliveries_per_s": round(load.rate * load.subscribers_per_call, 1),
        "latency": latency_summary(s for v in samples.values() for s in v),
    }
    if o.phase.nodes > 1:
        results["latency_same_node"] = latency_summary(samples[NODE_NAMES[0]])
        results["latency_cross_node"] = latency_summary(
            s for name in NODE_NAMES[1 : o.phase.nodes] for s in samples[name]
        )
    results |= {
        "per_node": per_node,
        "nodes_us_per_delivery": _us(nodes_cpu, deliveries),
        "services_us_per_delivery": {n: _us(c, deliveries) for n, c in w.services.items()},
        "all_servers_us_per_delivery": _us(nodes_cpu + services_cpu, deliveries),
        "client_us_per_delivery": _us(sum(w.clients[1:]), deliveries),
        "ws_ack_ms_p50": ack[len(ack) // 2] / 1000 if ack else float("nan"),
        "ws_ack_ms_p99": ack[int(len(ack) * 0.99)] / 1000 if ack else float("nan"),
        "publisher_late_sends": pub.late,
        "misordered_acks": pub.misordered,
        "publish_errors": pub.errors,
        "cpu": w.as_dict(),
        "server_logs": o.logs,
    }
    results["failures"] = _failures(results, pub)
    results["warnings"] = _warnings(results, w, pub, load)
    return results


def _failures(r: dict[str, Any], pub: Published) -> list[str]:
    out = []
    if r["subscribe_failures"]:
        out.append(f"{r['subscribe_failures']} subscribers failed to join")
    if r["gaps"] or r["duplicates_or_reordered"]:
        out.append(f"{r['gaps']} gaps, {r['duplicates_or_reordered']} repeated/reordered seqs")
    if r["subscribers_behind"] or r["deliveries"] != r["expected_deliveries"]:
        out.append(
            f"{r['deliveries']} of {r['expected_deliveries']} deliveries,"
            f" {r['subscribers_behind']} subscribers behind"
        )
    if pub.errors or pub.acked != pub.sent:
        out.append(f"{pub.sent - pub.acked} of {pub.sent} appends not acknowledged: {pub.errors}")
    if pub.misordered:
        out.append(f"{pub.misordered} producer acks out of order")
    return out


def _warnings(r: dict[str, Any], w: ClusterWindow, pub: Published, load: Load) -> list[str]:
    out = w.warnings()
    if pub.late > load.events * 0.01:
        out.append(f"publisher fell behind its schedule ({pub.late} late sends)")
    for name, log in r["server_logs"].items():
        if log.get("error_lines") or log.get("tracebacks"):
            out.append(f"node {name} logged errors: {log.get('first_errors')}")
    return out


def fail_on_broken_rules(result: dict[str, Any], phases: dict[str, dict[str, Any]]) -> None:
    """Mark ``result`` failed (its ``error``) with every phase's broken rules, by phase."""
    failures = [f"{name}: {f}" for name, r in phases.items() for f in r["failures"]]
    if failures:
        result["error"] = "; ".join(failures)


def compact(r: dict[str, Any]) -> dict[str, Any]:
    """The few figures of a phase worth a line: rate, latency, CPU per delivery per node."""
    out: dict[str, Any] = {
        "deliveries_per_s": r["deliveries_per_s"],
        "p50_ms": r["latency"]["p50_ms"],
        "p99_ms": r["latency"]["p99_ms"],
    }
    if "latency_cross_node" in r:
        same, cross = r["latency_same_node"], r["latency_cross_node"]
        out |= {
            "same_node_p50_ms": same["p50_ms"],
            "same_node_p99_ms": same["p99_ms"],
            "cross_node_p50_ms": cross["p50_ms"],
            "cross_node_p99_ms": cross["p99_ms"],
        }
    for name, node in r["per_node"].items():
        out[f"node_{name}_us_per_delivery"] = node["us_per_delivery"]
        out[f"node_{name}_cores"] = node["cpu_cores"]
    for name, cores in r["cpu"]["service_cores"].items():
        out[f"{name}_cores"] = cores
    out["all_servers_us_per_delivery"] = r["all_servers_us_per_delivery"]
    out["client_cores"] = r["cpu"]["client_cores"]
    out["ack_p99_ms"] = r["ws_ack_ms_p99"]
    if "transcripts_per_transaction" in r:
        out["transcripts_per_commit"] = r["transcripts_per_transaction"]
    out["ok"] = not r["failures"]
    return out
