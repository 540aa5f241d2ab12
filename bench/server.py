"""A fresh Scribeline server in its own process, with its own temporary data directory.

Every scenario starts one, so results never mix. The server listens on 127.0.0.1
only; the organization and key are made with the ``scribeline`` admin commands,
exactly as an operator would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil  # type: ignore[import-untyped]

from bench.workers import raise_nofile

__all__ = ["HOST", "Server", "scribeline_bin"]

HOST = "127.0.0.1"
_LISTENING = re.compile(r"Scribeline listening on http://([\d.]+):(\d+)")


def scribeline_bin() -> str:
    """The ``scribeline`` script next to the running interpreter (the venv's)."""
    beside = Path(sys.executable).parent / "scribeline"
    if beside.exists():
        return str(beside)
    found = shutil.which("scribeline")
    if found is None:
        raise RuntimeError("cannot find the scribeline command; run with .venv/bin/python")
    return found


class Server:
    """Start with ``with Server(env) as server:``; stopped with SIGTERM on exit.

    ``env`` also reaches the admin commands, so ``SCRIBELINE_DATABASE_URL`` puts the
    organization and key in that database. A node joining a database another node
    already set up is given that node's ``key`` and creates none.
    """

    #: Which server this is in results ("reference" for bench.reference's).
    kind = "scribeline"
    #: The seq of a new call's last event: creating a call publishes its status as seq 1.
    initial_head = 1

    def __init__(
        self, env: dict[str, str] | None = None, keep_data: bool = False, key: str = ""
    ) -> None:
        self.env = dict(env or {})
        self.keep_data = keep_data
        self.data_dir = Path(tempfile.mkdtemp(prefix="scribeline-bench-"))
        self.port = 0
        self.key = key
        self.exit_code: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None
        self._log_cache: str | None = None
        self.stop_seconds: float | None = None
        self.killed = False  # did not stop within the timeout after SIGTERM

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _admin(self, *args: str) -> str:
        done = subprocess.run(
            [scribeline_bin(), *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **self.env},
        )
        if done.returncode != 0:
            raise RuntimeError(f"scribeline {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, timeout: float = 30.0) -> None:
        if not self.key:
            self._admin("orgs", "create", "bench", "--init")
            out = self._admin("keys", "create", "--org", "bench", "--scopes", "read,write")
            self.key = out.strip().splitlines()[-1].strip()
        argv = [scribeline_bin(), "serve", "--host", HOST, "--port", "0"]
        argv += ["--data-dir", str(self.data_dir)]
        match = self._launch(argv, _LISTENING, timeout)
        if match is None:
            raise RuntimeError(f"server did not start: {self.stderr()[-2000:]}")
        self.port = int(match.group(2))

    def _launch(
        self, argv: list[str], listening: re.Pattern[str], timeout: float
    ) -> re.Match[str] | None:
        """Start ``argv`` with its output in the data directory; the first match of
        ``listening`` in its stdout, or None if it exited or ``timeout`` passed first."""
        raise_nofile()  # the server inherits this process's open-files limit
        env = {**os.environ, **self.env}
        stdout = (self.data_dir / "server.out").open("wb")
        stderr = (self.data_dir / "server.err").open("wb")
        self._proc = subprocess.Popen(
            argv,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        stdout.close()
        stderr.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = listening.search(self.stdout())
            if match:
                self._ps = psutil.Process(self._proc.pid)
                return match
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        return None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``); records how long stopping took."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                proc.kill()
                proc.wait(5)
            self.stop_seconds = round(time.monotonic() - began, 2)
        if proc is not None:
            self.exit_code = proc.returncode
        if not self.keep_data and self._log_cache is None:
            # Keep the log text for problems() before the directory goes away.
            self._log_cache = self.stderr()
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- observation -------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """The server process's own CPU time so far (user + system, all its threads)."""
        assert self._ps is not None
        times = self._ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        assert self._ps is not None
        return int(self._ps.memory_info().rss)

    def num_fds(self) -> int:
        assert self._ps is not None
        return int(self._ps.num_fds())

    def stdout(self) -> str:
        return self._read("server.out")

    def stderr(self) -> str:
        if self._log_cache is not None:
            return self._log_cache
        return self._read("server.err")

    def _read(self, name: str) -> str:
        try:
            return (self.data_dir / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def problems(self) -> dict[str, object]:
        """What the server's log says went wrong (errors, tracebacks, slow-consumer closes)."""
        log = self.stderr()
        lines = log.splitlines()
        errors = [ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln]
        return {
            "exit_code": self.exit_code,
            "stop_seconds": self.stop_seconds,
            "killed_after_sigterm_timeout": self.killed,
            "error_lines": len(errors),
            "first_errors": errors[:5],
            "tracebacks": log.count("Traceback (most recent call last)"),
            "slow_consumer_closes": sum("closing slow consumer" in ln for ln in lines),
            "dropped_unresponsive": sum("did not answer a ping" in ln for ln in lines),
        }
