"""Measurements: CPU over a window for the server, the clients and the machine; percentiles.

CPU is read with psutil from each process's own counters (user + system, all
threads) at the start and end of the measurement window, so set-up and
tear-down never count. The machine's total busy time over the same window
shows how much of the 2 cores other work took (the machine is shared).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.profile import Profiler

__all__ = ["CLIENT_SATURATED", "CpuMeter", "CpuWindow", "latency_summary", "percentile"]

#: A client process busier than this (fraction of one core) is the bottleneck.
CLIENT_SATURATED = 0.85


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (``q`` in 0..100)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def latency_summary(samples_us: Iterable[float]) -> dict[str, float | int]:
    """p50/p90/p99/max in milliseconds, from samples in microseconds."""
    ordered = sorted(samples_us)
    out: dict[str, float | int] = {"samples": len(ordered)}
    for name, q in (("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("max_ms", 100.0)):
        out[name] = round(percentile(ordered, q) / 1000, 3)
    return out


def _busy(times: Any) -> float:
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _own(pid: int) -> float:
    return sum(_split(pid))


def _threads(pid: int) -> dict[int, float]:
    """CPU-seconds of each of a process's threads (the main thread's id is the pid)."""
    try:
        return {t.id: float(t.user_time + t.system_time) for t in psutil.Process(pid).threads()}
    except psutil.Error:
        return {}


def _split(pid: int) -> tuple[float, float]:
    """A process's (user, system) CPU-seconds so far."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return math.nan, math.nan
    return float(t.user), float(t.system)


def _all_processes() -> dict[int, tuple[str, float]]:
    """Every user-space process's name and CPU time (to name the ones contending with us).

    Kernel threads (children of kthreadd, pid 2) are left out: their work here is
    mostly ours (the server's fsyncs, loopback networking), not contention.
    """
    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["name", "cpu_times", "ppid"]):
        times = proc.info.get("cpu_times")
        if times is not None and proc.pid != 2 and proc.info.get("ppid") != 2:
            out[proc.pid] = (str(proc.info.get("name")), float(times.user + times.system))
    return out


@dataclass(frozen=True, slots=True)
class _Snapshot:
    wall: float
    server: float
    server_system: float
    server_threads: dict[int, float]
    clients: tuple[float, ...]
    machine_busy: float
    processes: dict[int, tuple[str, float]]


@dataclass(frozen=True, slots=True)
class CpuWindow:
    """CPU-seconds spent over one window, per party."""

    seconds: float
    server: float
    server_system: float  # the part of ``server`` spent in the kernel (syscalls)
    server_main_thread: float  # the event loop's thread; the rest is worker threads (SQLite)
    clients: tuple[float, ...]
    machine_busy: float
    cores: int
    top_others: tuple[tuple[str, int, float], ...]  # (name, pid, cpu-seconds)
    others: float  # CPU-seconds of user-space processes not ours (contention)
    profile: str | None = None  # a py-spy recording of the server over the window

    @property
    def kernel(self) -> float:
        """The rest of the busy time: kernel threads and interrupts (I/O, networking)."""
        return max(0.0, self.machine_busy - self.server - sum(self.clients) - self.others)

    def client_saturated(self) -> bool:
        return any(c / self.seconds >= CLIENT_SATURATED for c in self.clients if self.seconds)

    def machine_saturated(self) -> bool:
        return self.seconds > 0 and self.machine_busy / self.seconds >= 0.9 * self.cores

    def as_dict(self) -> dict[str, Any]:
        secs = self.seconds or math.nan
        return {
            "window_s": round(self.seconds, 3),
            "server_cpu_s": round(self.server, 3),
            "server_cores": round(self.server / secs, 3),
            "server_system_share": round(self.server_system / self.server, 3)
            if self.server
            else math.nan,
            "server_main_thread_cores": round(self.server_main_thread / secs, 3),
            "server_other_threads_cores": round((self.server - self.server_main_thread) / secs, 3),
            "client_cores": [round(c / secs, 3) for c in self.clients],
            "kernel_cores": round(self.kernel / secs, 3),
            "others_cores": round(self.others / secs, 3),
            "top_others": [f"{n}[{pid}]={c / secs:.2f}" for n, pid, c in self.top_others],
            "machine_cores_busy": round(self.machine_busy / secs, 3),
            "cores": self.cores,
            "client_saturated": self.client_saturated(),
            "machine_saturated": self.machine_saturated(),
            **({"profile": self.profile} if self.profile else {}),
        }

    def warnings(self) -> list[str]:
        out = []
        if self.profile:
            out.append(f"profiled run (py-spy attached, costs the server some CPU): {self.profile}")
        secs = self.seconds or math.nan
        if self.client_saturated():
            out.append(
                "client side saturated: a client process used "
                f"{max(self.clients) / secs:.0%} of a core; results are client-bound"
            )
        if self.machine_saturated():
            out.append(
                f"machine saturated: {self.machine_busy / secs:.2f} of {self.cores} cores busy"
            )
        if self.others / secs > 0.25:
            names = ", ".join(f"{n}[{pid}] {c / secs:.2f}" for n, pid, c in self.top_others)
            out.append(
                f"contention: other processes used {self.others / secs:.2f} cores in the window"
                f" (top: {names})"
            )
        return out


class CpuMeter:
    """Snapshots of the server's, the clients' and the machine's CPU time."""

    def __init__(self, server_pid: int, client_pids: Sequence[int]) -> None:
        self._server = server_pid
        self._clients = tuple(client_pids)
        self._start: _Snapshot | None = None
        self._profiler = Profiler(server_pid)

    def _snapshot(self) -> _Snapshot:
        machine = psutil.cpu_times()
        user, system = _split(self._server)
        return _Snapshot(
            wall=time.monotonic(),
            server=user + system,
            server_system=system,
            server_threads=_threads(self._server),
            clients=tuple(_own(pid) for pid in self._clients),
            machine_busy=_busy(machine),
            processes=_all_processes(),
        )

    def start(self) -> None:
        self._profiler.start()
        self._start = self._snapshot()

    def stop(self) -> CpuWindow:
        assert self._start is not None, "start() first"
        end = self._snapshot()
        a = self._start
        others = self._others(a, end)
        profile = self._profiler.stop()
        return CpuWindow(
            seconds=end.wall - a.wall,
            server=end.server - a.server,
            server_system=end.server_system - a.server_system,
            server_main_thread=end.server_threads.get(self._server, math.nan)
            - a.server_threads.get(self._server, math.nan),
            clients=tuple(e - s for e, s in zip(end.clients, a.clients, strict=True)),
            machine_busy=end.machine_busy - a.machine_busy,
            cores=os.cpu_count() or 1,
            top_others=others[:3],
            others=sum(o[2] for o in others),
            profile=str(profile) if profile else None,
        )

    def _others(self, a: _Snapshot, b: _Snapshot) -> tuple[tuple[str, int, float], ...]:
        ours = {self._server, *self._clients}
        used = []
        for pid, (name, cpu) in b.processes.items():
            if pid in ours:
                continue
            before = a.processes.get(pid)
            delta = cpu - (before[1] if before is not None and before[0] == name else 0.0)
            if delta > 0.0:
                used.append((name, pid, round(delta, 3)))
        return tuple(sorted(used, key=lambda u: -u[2]))
