"""The reference server, run beside Scribeline so its figures come from the same run.

The reference (``../shared/reference/py_ceiling_server.py`` next to this repository,
or the script ``BENCH_REFERENCE`` names) is a minimal hand-framed asyncio fan-out
server: no auth beyond a non-empty token, no storage, an in-memory per-call seq. It
serves subscribers on ``/live-transcript/{sid}``, ``POST /v1/calls``,
``POST /v1/calls/{sid}/transcripts`` and ``GET /healthz``, so the scenarios that use
only those (fanout, idle, connects, many_calls_rest) run against it unchanged.
Machines here are shared and noisy: only ratios measured together hold.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Literal

from bench.server import HOST, Server

__all__ = [
    "SERVER_KINDS",
    "ReferenceServer",
    "ServerKind",
    "make_server",
    "reference_script",
    "reference_unavailable",
]

ServerKind = Literal["scribeline", "reference"]
SERVER_KINDS: tuple[ServerKind, ...] = ("scribeline", "reference")

SCRIPT_NAME = "py_ceiling_server.py"
_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on ([\d.]+):(\d+)")
#: What the script imports (websockets is optional to it).
_NEEDS = ("uvloop", "httptools", "orjson")


def reference_script() -> Path:
    """Where the reference script is: ``BENCH_REFERENCE``, else beside the repository."""
    named = os.environ.get("BENCH_REFERENCE")
    if named:
        return Path(named)
    return _ROOT.parent / "shared" / "reference" / SCRIPT_NAME


def reference_unavailable() -> str | None:
    """Why the reference cannot run here, or None if it can."""
    script = reference_script()
    if not script.is_file():
        if os.environ.get("BENCH_REFERENCE"):
            return f"no reference script at {script} (BENCH_REFERENCE)"
        return f"no reference script at {script} (set BENCH_REFERENCE to its path)"
    missing = [m for m in _NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        return f"the reference needs {', '.join(missing)} in this interpreter"
    return None


def _free_port() -> int:
    """A port nothing listens on now (the script cannot report a port 0 it was given)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ReferenceServer(Server):
    """The reference script in its own process, with Server's interface.

    Its token is any non-empty string; it stores nothing, so the data directory
    holds only its output. A new call has no event yet (head 0): subscribers get
    ``connection_established`` and a status message without a seq.
    """

    kind = "reference"
    initial_head = 0

    def __init__(self, env: dict[str, str] | None = None, keep_data: bool = False) -> None:
        super().__init__(env, keep_data, key="bench-reference")

    def start(self, timeout: float = 30.0) -> None:
        reason = reference_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        script = str(reference_script())
        for _ in range(3):  # another process may take the free port before the script
            port = _free_port()
            argv = [sys.executable, script, "--host", HOST, "--port", str(port)]
            if self._launch(argv, _LISTENING, timeout) is not None:
                self.port = port
                self._wait_healthy(timeout)
                return
            if self._proc is not None and self._proc.poll() is None:
                break  # running but silent: not a port clash
        raise RuntimeError(f"reference server did not start: {self.stderr()[-2000:]}")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.http}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def problems(self) -> dict[str, object]:
        found = super().problems()
        # The reference evicts a subscriber past its queue bound and counts it on exit.
        evicted = re.search(r"evicted=(\d+)", self.stderr())
        found["slow_consumer_closes"] = int(evicted.group(1)) if evicted else 0
        return found


def make_server(
    kind: ServerKind, env: dict[str, str] | None = None, keep_data: bool = False
) -> Server:
    """A Scribeline server, or the reference server, not started yet."""
    if kind == "reference":
        return ReferenceServer(env, keep_data)
    return Server(env, keep_data)
