"""CPU over a measurement window for several server nodes, their services and the clients.

:class:`bench.metrics.CpuMeter` knows one server; a cluster run has two nodes,
PostgreSQL (a postmaster and a process per connection) and Redis, and each
must be told apart from the clients and from other users of the machine. One
scan of every process at the start and end of the window gives all of it;
a service's processes are listed again at each end (PostgreSQL may start a
backend mid-run). A process that starts and ends inside the window (another
user's test run spawns many) is seen by no scan: its time shows up as
*unattributed*, with the number of processes started in the window beside it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.metrics import CLIENT_SATURATED
from bench.profile import Profiler

__all__ = ["ClusterMeter", "ClusterWindow"]

#: A service's processes, listed when asked (they can change between snapshots).
PidLister = Callable[[], Sequence[int]]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    wall: float
    cpu: dict[int, tuple[str, int, float]]  # pid -> (name, ppid, user + system seconds)
    main_threads: dict[int, float]  # node pid -> its main thread's seconds
    services: dict[str, frozenset[int]]
    machine_busy: float
    forks: int


def _scan() -> dict[int, tuple[str, int, float]]:
    out: dict[int, tuple[str, int, float]] = {}
    for proc in psutil.process_iter(["name", "cpu_times", "ppid"]):
        times = proc.info.get("cpu_times")
        if times is not None:
            ppid = int(proc.info.get("ppid") or 0)
            out[proc.pid] = (str(proc.info.get("name")), ppid, float(times.user + times.system))
    return out


def _main_thread(pid: int) -> float:
    try:
        for thread in psutil.Process(pid).threads():
            if thread.id == pid:
                return float(thread.user_time + thread.system_time)
    except psutil.Error:
        pass
    return math.nan


def _forks() -> int:
    """Processes started since boot (``/proc/stat``), to count the short-lived ones."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("processes "):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _busy() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


@dataclass(frozen=True, slots=True)
class ClusterWindow:
    """CPU-seconds spent over one window, per node, per service and per client."""

    seconds: float
    nodes: dict[str, float]
    node_main_threads: dict[str, float]
    services: dict[str, float]
    clients: tuple[float, ...]  # the orchestrator (producers) first, then the workers
    machine_busy: float
    cores: int
    others: float  # user-space processes that are none of ours
    top_others: tuple[tuple[str, int, float], ...]
    profiles: dict[str, str]
    forks: int  # processes started in the window (ours included: none, normally)

    @property
    def unattributed(self) -> float:
        """The rest of the busy time: kernel threads, interrupts (I/O, loopback) and
        processes that started and ended inside the window."""
        ours = sum(self.nodes.values()) + sum(self.services.values()) + sum(self.clients)
        return max(0.0, self.machine_busy - ours - self.others)

    def cores_of(self, seconds: float) -> float:
        return round(seconds / self.seconds, 3) if self.seconds else math.nan

    def client_saturated(self) -> bool:
        return any(c / self.seconds >= CLIENT_SATURATED for c in self.clients if self.seconds)

    def machine_saturated(self) -> bool:
        return self.seconds > 0 and self.machine_busy / self.seconds >= 0.9 * self.cores

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_s": round(self.seconds, 3),
            "node_cores": {n: self.cores_of(c) for n, c in self.nodes.items()},
            "node_main_thread_cores": {
                n: self.cores_of(c) for n, c in self.node_main_threads.items()
            },
            "service_cores": {n: self.cores_of(c) for n, c in self.services.items()},
            "client_cores": [self.cores_of(c) for c in self.clients],
            "unattributed_cores": self.cores_of(self.unattributed),
            "processes_started": self.forks,
            "others_cores": self.cores_of(self.others),
            "top_others": [f"{n}[{pid}]={self.cores_of(c)}" for n, pid, c in self.top_others],
            "machine_cores_busy": self.cores_of(self.machine_busy),
            "cores": self.cores,
            "client_saturated": self.client_saturated(),
            "machine_saturated": self.machine_saturated(),
            **({"profiles": self.profiles} if self.profiles else {}),
        }

    def warnings(self) -> list[str]:
        out = [f"profiled run (py-spy on {n}): {p}" for n, p in self.profiles.items()]
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
        if self.unattributed / secs > 0.3:
            out.append(
                f"contention: {self.unattributed / secs:.2f} cores busy with no process we"
                " could see"
                f" ({self.forks} processes started in the window: others' short-lived ones,"
                " or kernel work)"
            )
        if self.others / secs > 0.25:
            names = ", ".join(f"{n}[{pid}] {c / secs:.2f}" for n, pid, c in self.top_others)
            out.append(
                f"contention: other processes used {self.others / secs:.2f} cores in the window"
                f" (top: {names})"
            )
        return out


class ClusterMeter:
    """Snapshots of the nodes', the services', the clients' and the machine's CPU time."""

    def __init__(
        self,
        nodes: Mapping[str, int],
        services: Mapping[str, PidLister],
        clients: Sequence[int],
    ) -> None:
        self._nodes = dict(nodes)
        self._services = dict(services)
        self._clients = tuple(clients)
        self._profilers = {n: Profiler(pid, f"node-{n}") for n, pid in self._nodes.items()}
        self._start: _Snapshot | None = None

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(
            wall=time.monotonic(),
            cpu=_scan(),
            main_threads={pid: _main_thread(pid) for pid in self._nodes.values()},
            services={n: frozenset(lister()) for n, lister in self._services.items()},
            machine_busy=_busy(),
            forks=_forks(),
        )

    def start(self) -> None:
        for profiler in self._profilers.values():
            profiler.start()
        self._start = self._snapshot()

    def stop(self) -> ClusterWindow:
        assert self._start is not None, "start() first"
        end = self._snapshot()
        a = self._start

        def used(pid: int) -> float:
            after = end.cpu.get(pid)
            if after is None:
                return 0.0
            before = a.cpu.get(pid)
            # A pid seen only at the end started inside the window: all its time counts.
            return after[2] - (before[2] if before is not None and before[0] == after[0] else 0.0)

        services = {n: a.services[n] | end.services[n] for n in self._services}
        ours = {*self._nodes.values(), *self._clients, *(p for s in services.values() for p in s)}
        others = sorted(
            (
                (name, pid, round(used(pid), 3))
                for pid, (name, ppid, _) in end.cpu.items()
                # Kernel threads (children of kthreadd) mostly do our I/O: not contention.
                if pid not in ours and pid != 2 and ppid != 2 and used(pid) > 0
            ),
            key=lambda o: -o[2],
        )
        profiles = {n: p.stop() for n, p in self._profilers.items()}
        return ClusterWindow(
            seconds=end.wall - a.wall,
            nodes={n: used(pid) for n, pid in self._nodes.items()},
            node_main_threads={
                n: end.main_threads[pid] - a.main_threads[pid] for n, pid in self._nodes.items()
            },
            services={n: sum(used(pid) for pid in pids) for n, pids in services.items()},
            clients=tuple(used(pid) for pid in self._clients),
            machine_busy=end.machine_busy - a.machine_busy,
            cores=os.cpu_count() or 1,
            others=sum(o[2] for o in others),
            top_others=tuple(others[:3]),
            profiles={n: str(p) for n, p in profiles.items() if p},
            forks=end.forks - a.forks,
        )
