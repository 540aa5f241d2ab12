"""Readiness (``/readyz``): shared and briefly cached, because checking it writes.

The storage check makes a durable write, and ``/readyz`` needs no
credential, so probes are not run once per request: concurrent requests
share the probe in flight, and its result stands for ``ttl`` seconds.

A check is ``ok``, ``unavailable: ...`` (the probe raised or timed out: the
node must not take traffic) or ``degraded: ...`` (the probe said so: the
node serves with less, e.g. node-local limits while Redis is unreachable).
A node is ready unless a check is unavailable: taking every node out of a
load balancer because the Redis they all share is down would only turn a
degradation into an outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["Probe", "Readiness", "is_ready", "soft", "summary"]

#: A check that raises when its component is not ready, and returns a
#: ``"degraded: ..."`` text when it works with less (None: ok).
Probe = Callable[[], Awaitable[str | None]]


def soft(probe: Probe, within: float) -> Probe:
    """``probe``, with a failure or a wait past ``within`` seconds reported as
    ``degraded: ...`` (a component the node can serve without, such as the
    broker, whose losses are repaired from storage)."""

    async def degrading() -> str | None:
        try:
            async with asyncio.timeout(within):
                return await probe()
        except TimeoutError:
            return "degraded: timed out"
        except Exception as exc:
            return f"degraded: {type(exc).__name__}"

    return degrading


def is_ready(checks: Mapping[str, str]) -> bool:
    """Ready unless a check is unavailable (a degraded one still serves)."""
    return not any(v.startswith("unavailable") for v in checks.values())


def summary(checks: Mapping[str, str]) -> str:
    """``ready``, ``degraded`` (ready, with a degraded check) or ``unavailable``."""
    if not is_ready(checks):
        return "unavailable"
    return "ready" if all(v == "ok" for v in checks.values()) else "degraded"


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
                        status = await probe()
                    checks[name] = status or "ok"
                except TimeoutError:
                    checks[name] = "unavailable: timed out"
                except Exception as exc:
                    checks[name] = f"unavailable: {type(exc).__name__}"
            self._result, self._checked_at = checks, time.monotonic()
            return checks
        finally:
            self._running = None
