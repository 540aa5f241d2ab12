"""A real HTTP receiver for webhook tests, on a loopback port of the test process.

Each path behaves as told (``answer``): a status, a number of failures before
success, or holding the request until released. Every request is recorded
with its arrival time; tests await conditions on the records, never sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["Received", "Receiver"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    peer_port: int  # the sender's port (which process sent it)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class _Behaviour:
    status: int = 200
    failures: int = 0  # answer 500 this many times first
    hold: asyncio.Event | None = None  # wait for this before answering
    work: float = 0.0  # seconds each answer takes (a slow receiver)


@dataclass
class Receiver:
    received: list[Received] = field(default_factory=list)
    behaviours: dict[str, _Behaviour] = field(default_factory=dict)
    #: Requests being answered now, and the most at once, per call SID in the body.
    inflight: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(
        self,
        path: str,
        status: int = 200,
        failures: int = 0,
        hold: asyncio.Event | None = None,
        work: float = 0.0,
    ) -> None:
        self.behaviours[path] = _Behaviour(status, failures, hold, work)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        entry = Received(
            request.path, dict(request.headers), body, time.time(), peer[1] if peer else 0
        )
        call = str(orjson.loads(body).get("data", {}).get("call_sid")) if body else ""
        self.inflight[call] += 1
        self.peak[call] = max(self.peak[call], self.inflight[call])
        try:
            return await self._answer(request, entry)
        finally:
            self.inflight[call] -= 1

    async def _answer(self, request: web.Request, entry: Received) -> web.Response:
        async with self._changed:
            self.received.append(entry)
            self._changed.notify_all()
        behaviour = self.behaviours.get(request.path, _Behaviour())
        if behaviour.hold is not None:
            await behaviour.hold.wait()
        if behaviour.work:
            await asyncio.sleep(behaviour.work)  # the receiver's own work, not a wait
        if behaviour.failures > 0:
            behaviour.failures -= 1
            return web.Response(status=500, text="not now")
        return web.Response(status=behaviour.status, text="ok")

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(
        self, check: Callable[[list[Received]], bool], within: float = 20.0
    ) -> list[Received]:
        """Wait until ``check(received)`` holds; the records then."""
        async with asyncio.timeout(within):
            async with self._changed:
                await self._changed.wait_for(lambda: check(self.received))
        return list(self.received)
