"""``scribeline serve --workers N``: N server processes sharing one port.

The parent binds the port first with ``SO_REUSEPORT`` (so ``--port 0`` picks
one port for all), then starts N children (``python -m scribeline serve``)
that bind the same port with ``SO_REUSEPORT``: the kernel spreads incoming
connections over them. The parent holds its socket bound but never listens,
so it receives no connections. It forwards each child's output prefixed with
the worker's number, prints the usual ``Scribeline listening on ...`` line once
every worker listens, restarts a worker that dies (after a pause, so a crash
loop does not spin), and on SIGTERM or SIGINT stops them all the way one server
stops (1001 to every WebSocket, drain, flush).

Workers share nothing in memory: they need the shared store and broker that
:func:`scribeline.deployment.check` insists on, exactly as separate machines do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

from scribeline.config import Settings

__all__ = ["WORKER_ENV", "run_workers"]

log = logging.getLogger(__name__)

#: Set in a worker's environment: its number (1..N), for its log lines.
WORKER_ENV = "SCRIBELINE_WORKER"

#: Seconds before a worker that exited on its own is started again.
RESTART_DELAY = 1.0


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (without listening) the address every worker will share; picks a port for 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _Supervisor:
    def __init__(self, settings: Settings, count: int, port: int) -> None:
        self._settings = settings
        self._count = count
        self._port = port
        self._argv = [sys.executable, "-m", "scribeline", "serve"]
        # Flags became settings in the parent: hand them down as the variables they
        # override, with the one port every worker shares.
        self._env = {
            "SCRIBELINE_HOST": settings.host,
            "SCRIBELINE_PORT": str(port),
            "SCRIBELINE_DATA_DIR": str(settings.data_dir),
            "SCRIBELINE_DATABASE_URL": settings.database_url,
            "SCRIBELINE_BROKER_URL": settings.broker_url,
            "SCRIBELINE_REUSE_PORT": "true",
        }
        self._stopping = asyncio.Event()
        self._ready: set[int] = set()
        self._all_ready = asyncio.Event()
        self._processes: dict[int, asyncio.subprocess.Process] = {}

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        keepers = [asyncio.create_task(self._keep(number)) for number in range(1, self._count + 1)]
        announce = asyncio.create_task(self._announce())
        await self._stopping.wait()
        announce.cancel()
        for process in self._processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        await asyncio.gather(*keepers)
        return 0

    async def _announce(self) -> None:
        await self._all_ready.wait()
        base = f"http://{self._settings.host}:{self._port}"
        print(f"Scribeline listening on {base}", flush=True)
        pids = " ".join(str(p.pid) for p in self._processes.values())
        print(f"{self._count} workers (pids {pids})", flush=True)

    async def _keep(self, number: int) -> None:
        """Run worker ``number`` until stopping, restarting it if it dies."""
        while True:
            env = dict(os.environ, **self._env, **{WORKER_ENV: str(number)})
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,  # log lines go straight to ours
            )
            self._processes[number] = process
            assert process.stdout is not None
            await self._forward(number, process.stdout)
            code = await self._wait(process)
            self._ready.discard(number)
            if self._stopping.is_set():
                return
            log.error("worker %d exited with status %s; starting it again", number, code)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RESTART_DELAY)
            if self._stopping.is_set():
                return

    async def _forward(self, number: int, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if text.startswith("Scribeline listening on "):
                self._ready.add(number)
                if len(self._ready) == self._count:
                    self._all_ready.set()
                text = f"worker {number} ready"
            print(f"[{number}] {text}", flush=True)

    async def _wait(self, process: asyncio.subprocess.Process) -> int:
        if not self._stopping.is_set():
            return await process.wait()
        try:
            return await asyncio.wait_for(process.wait(), self._settings.shutdown_timeout + 5)
        except TimeoutError:
            process.kill()
            return await process.wait()


def run_workers(settings: Settings, count: int) -> int:
    """Run ``count`` workers of ``scribeline serve`` with ``settings`` on one port."""
    reserved = _reserve(settings.host, settings.port)
    port = int(reserved.getsockname()[1])
    try:
        return asyncio.run(_Supervisor(settings, count, port).run())
    finally:
        reserved.close()
