"""Readiness probes are shared by concurrent requests and cached briefly."""

from __future__ import annotations

import asyncio

from scribeline.readiness import Readiness


async def test_concurrent_checks_share_one_probe_and_its_result_is_kept() -> None:
    """Fifty concurrent /readyz checks cost one probe (each probe of storage is a
    durable write); within the cache time no new probe runs; after it, one does."""
    calls = 0
    gate = asyncio.Event()

    async def probe() -> None:
        nonlocal calls
        calls += 1
        await gate.wait()

    readiness = Readiness({"storage": probe}, timeout=5, ttl=60)
    checks = [asyncio.ensure_future(readiness.check()) for _ in range(50)]
    await asyncio.sleep(0)  # let them all start waiting on the one probe
    gate.set()
    assert all(r == {"storage": "ok"} for r in await asyncio.gather(*checks))
    assert await readiness.check() == {"storage": "ok"}
    assert calls == 1

    expired = Readiness({"storage": probe}, timeout=5, ttl=0)
    await expired.check()
    await expired.check()
    assert calls == 3


async def test_a_failing_or_slow_probe_is_reported_not_raised() -> None:
    """A probe that raises or outlives the timeout makes its check unavailable."""

    async def broken() -> None:
        raise ConnectionError

    async def stuck() -> None:
        await asyncio.Event().wait()

    readiness = Readiness({"storage": stuck, "broker": broken}, timeout=0.05)
    assert await readiness.check() == {
        "storage": "unavailable: timed out",
        "broker": "unavailable: ConnectionError",
    }
