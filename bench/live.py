"""The shared skeleton of the live scenarios (fanout, many_calls).

Subscribers connect from worker processes and receive their history; then the
measurement window opens, the publisher (in this process) runs, every
subscriber waits until it has its call's last seq, and the window closes.
Publishers pace events on a schedule (event ``i`` is due at ``start + i/rate``)
and never wait for one event's acknowledgement before sending the next.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.metrics import CpuMeter, CpuWindow, latency_summary
from bench.server import HOST, Server
from bench.subscribers import ClientKind, SubscribeJob, subscribe_worker
from bench.workers import Message, WorkerPool

__all__ = ["LiveRun", "Published", "pace", "run_live"]


@dataclass(slots=True)
class Published:
    """What a publisher did: the last seq of each call and how appends went."""

    last: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    ack_us: list[int] = field(default_factory=list)  # send -> stored-and-acked
    late: int = 0  # events sent more than 5 ms after they were due (publisher lag)
    misordered: int = 0  # acks of one producer whose seq was not the previous + 1

    def error(self, exc: BaseException | str) -> None:
        name = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"[:160]
        self.errors[name] = self.errors.get(name, 0) + 1

    def stored(self, sid: str, seq: int) -> None:
        self.acked += 1
        if seq > self.last.get(sid, 0):
            self.last[sid] = seq


async def pace(count: int, rate: float, send: Callable[[int], None]) -> int:
    """Call ``send(i)`` for ``i`` in ``range(count)`` at ``rate`` per second; returns how many
    were sent late (more than 5 ms after they were due)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    late = 0
    i = 0
    while i < count:
        now = loop.time()
        due = start + i / rate
        if due > now:
            # Timers are only millisecond-precise; a shorter sleep would spin.
            await asyncio.sleep(max(due - now, 0.001))
            continue
        while i < count and start + i / rate <= now:
            if now - (start + i / rate) > 0.005:
                late += 1
            send(i)
            i += 1
    return late


@dataclass(slots=True)
class LiveRun:
    """The merged outcome of the subscribers and the window's CPU."""

    connected: int
    connect_failed: int
    connect_errors: dict[str, int]
    connect_seconds: float
    window: CpuWindow
    started_ns: int
    workers: list[Message]

    def total(self, key: str) -> int:
        return sum(int(w[key]) for w in self.workers)

    def results(self) -> dict[str, Any]:
        deliveries = self.total("deliveries")
        last_ns = max((int(w["last_ns"]) for w in self.workers), default=0)
        span = (last_ns - self.started_ns) / 1e9 if last_ns > self.started_ns else float("nan")
        codes: dict[str, int] = {}
        for w in self.workers:
            for code, n in w["close_codes"].items():
                codes[code] = codes.get(code, 0) + n
        samples = [s for w in self.workers for s in w["samples_us"]]
        return {
            "subscribers": self.connected,
            "subscribe_failures": self.connect_failed,
            "deliveries": deliveries,
            "expected_deliveries": self.total("expected"),
            "subscribers_behind": self.total("behind"),
            "gaps": self.total("gaps"),
            "duplicates": self.total("duplicates"),
            "closed_by_server": codes,
            "deliveries_per_s": round(deliveries / span, 1),
            "server_us_per_delivery": round(self.window.server / deliveries * 1e6, 2)
            if deliveries
            else float("nan"),
            # The subscriber workers' CPU (not the publisher's, which is this process).
            "client_us_per_delivery": round(sum(self.window.clients[1:]) / deliveries * 1e6, 2)
            if deliveries
            else float("nan"),
            "latency": latency_summary(samples),
            "cpu": self.window.as_dict(),
        }


async def run_live(
    server: Server,
    conn_sids: Sequence[str],
    heads: dict[str, int],
    *,
    kind: ClientKind,
    procs: int,
    sample_every: int,
    publish: Callable[[], Awaitable[Published]],
    connect_concurrency: int = 100,
    drain_timeout: float = 30.0,
) -> tuple[LiveRun, Published]:
    """Connect one subscriber per entry of ``conn_sids``, then measure ``publish()``."""
    procs = max(1, min(procs, len(conn_sids)))
    jobs = [
        SubscribeJob(
            host=HOST,
            port=server.port,
            token=server.key,
            kind=kind,
            sids=tuple(conn_sids[p::procs]),
            heads=heads,
            first_index=p,
            stride=procs,
            concurrency=connect_concurrency,
            sample_every=sample_every,
        )
        for p in range(procs)
    ]
    pool = WorkerPool(subscribe_worker, jobs)
    pool.start()
    try:
        async with asyncio.timeout(300):
            ready = await pool.gather()
        meter = CpuMeter(server.pid, [os.getpid(), *pool.pids])
        meter.start()
        started_ns = time.time_ns()
        published = await publish()
        pool.broadcast({"cmd": "finish", "last": published.last, "timeout": drain_timeout})
        async with asyncio.timeout(drain_timeout + 30):
            done = await pool.gather()
        window = meter.stop()
    finally:
        pool.stop()
    errors: dict[str, int] = {}
    for r in ready:
        for name, n in r["errors"].items():
            errors[name] = errors.get(name, 0) + n
    run = LiveRun(
        connected=sum(int(r["connected"]) for r in ready),
        connect_failed=sum(int(r["failed"]) for r in ready),
        connect_errors=errors,
        connect_seconds=max(float(r["seconds"]) for r in ready),
        window=window,
        started_ns=started_ns,
        workers=done,
    )
    return run, published
