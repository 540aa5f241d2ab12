"""Readiness (``/readyz``): shared and briefly cached, because checking it writes.

The storage check makes a durable write, and ``/readyz`` needs no
credential, so probes are not run once per request: concurrent requests
share the probe in flight, and its result stands for ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["Probe", "Readiness"]

#: A check that raises when its component is not ready.
Probe = Callable[[], Awaitable[None]]


class Readiness:
    """``await check()``: ``{name: "ok" | "unavailable: ..."}`` for every probe."""

    def __init__(self, probes: Mapping[str, Probe], timeout: float, ttl: float = 1.0) -> None:
        self._probes = dict(probes)
        self._timeout = timeout
        self._ttl = ttl
        self._result: dict[str, str] | None = None
        self._checked_at = 0.0
        self._running: asyncio.Task[dict[str, str]] | None = None

    async def check(self) -> dict[str, str]:
        if self._result is not None and time.monotonic() - self._checked_at < self._ttl:
            return self._result
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._probe())
        # Shielded: a caller that gives up does not cancel the others' probe.
        return await asyncio.shield(self._running)

    async def _probe(self) -> dict[str, str]:
        try:
            checks: dict[str, str] = {}
            for name, probe in self._probes.items():
                try:
                    async with asyncio.timeout(self._timeout):
                        await probe()
                    checks[name] = "ok"
                except TimeoutError:
                    checks[name] = "unavailable: timed out"
                except Exception as exc:
                    checks[name] = f"unavailable: {type(exc).__name__}"
            self._result, self._checked_at = checks, time.monotonic()
            return checks
        finally:
            self._running = None
