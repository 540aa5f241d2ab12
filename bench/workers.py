"""Client worker processes and the pipes the orchestrator drives them with.

One Python process on this 2-core machine cannot play a thousand clients and
also be the thing that is measured, so clients run in ``spawn``-ed worker
processes. The orchestrator sends each a job, then small command dicts; workers
answer with small result dicts. A worker whose pipe closes (the orchestrator
died) exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench.metrics import CpuMeter, CpuWindow

__all__ = ["WorkerPool", "measured", "pipe_recv", "raise_nofile", "run_async", "share"]

Message = dict[str, Any]

#: Longest a measured run may take before the scenario gives up.
RUN_TIMEOUT = 600.0


def raise_nofile(wanted: int = 1 << 20) -> int:
    """Raise this process's open-files limit as far as allowed; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_async(main: Callable[[], Any]) -> Any:
    """Run a coroutine function on uvloop (the cheaper loop for clients, too)."""
    import uvloop

    return uvloop.run(main())


async def pipe_recv(conn: Connection) -> Message:
    """Await one message without blocking the event loop; EOFError when the peer is gone."""
    loop = asyncio.get_running_loop()
    fd = conn.fileno()
    while not conn.poll():
        ready: asyncio.Future[None] = loop.create_future()

        def wake(ready: asyncio.Future[None] = ready) -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
    # The loop may have made the fd non-blocking; a large message arrives in pieces.
    os.set_blocking(fd, True)
    message: Message = conn.recv()
    return message


class WorkerPool:
    """Worker processes running ``target(pipe, job)``, one per job."""

    def __init__(self, target: Callable[[Connection, Any], None], jobs: Sequence[Any]) -> None:
        ctx = mp.get_context("spawn")
        self._pipes: list[Connection] = []
        self._child_ends: list[Connection] = []
        self._procs: list[BaseProcess] = []
        for index, job in enumerate(jobs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, job), name=f"bench-client-{index}")
            proc.daemon = True
            self._pipes.append(parent)
            self._child_ends.append(child)
            self._procs.append(proc)

    def __len__(self) -> int:
        return len(self._procs)

    def start(self) -> None:
        for proc in self._procs:
            proc.start()
        for child in self._child_ends:
            child.close()  # the workers hold theirs; ours would hide a worker's death

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def send(self, index: int, message: Message) -> None:
        self._pipes[index].send(message)

    def broadcast(self, message: Message) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(BrokenPipeError, OSError):
                pipe.send(message)

    async def gather(self) -> list[Message]:
        """One message from every worker, in worker order (bound it with a timeout)."""
        return list(await asyncio.gather(*(pipe_recv(pipe) for pipe in self._pipes)))

    def stop(self, timeout: float = 15.0) -> None:
        """Tell workers to exit; terminate those that do not (they are our children)."""
        self.broadcast({"cmd": "exit"})
        for proc in self._procs:
            if proc.pid is not None:
                proc.join(timeout)
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in self._pipes:
            pipe.close()


def share(total: int, parts: int, index: int) -> int:
    """Worker ``index``'s share when ``total`` is split as evenly as possible."""
    return total // parts + (1 if index < total % parts else 0)


async def measured(pool: WorkerPool, server_pid: int) -> tuple[list[Message], CpuWindow]:
    """Start the workers, wait until each has reported ready, then send ``go``
    and gather their results with the server's CPU measured over exactly that."""
    pool.start()
    try:
        async with asyncio.timeout(60):
            await pool.gather()
        meter = CpuMeter(server_pid, [os.getpid(), *pool.pids])
        meter.start()
        pool.broadcast({"cmd": "go"})
        async with asyncio.timeout(RUN_TIMEOUT):
            done = await pool.gather()
        return done, meter.stop()
    finally:
        pool.stop()
