"""One node's slot acquires and releases, sent to Redis in batches.

Every subscriber takes a slot when it connects and gives it back when it
leaves, and a thousand may do either at once: a failed node's clients
reconnecting here, this node closing them all on SIGTERM. One command each
would need as many pooled connections, and redis-py refuses past its pool's
size with an error that looks like an outage (the node then degraded and,
at shutdown, left most of its slots to their leases). Instead, what is asked
while a batch is on its way goes in the next one: one pipeline on one
connection, in the order asked, whatever the burst.

A batch belongs to no caller: a caller cancelled while it waits (a handler
cancelled at shutdown) gives up its answer, never the work, and a cancelled
acquire is followed by a release, since it may have been admitted. A request
whose batch fails (Redis unreachable or refusing writes, or the batch cut
short by :meth:`SlotBatcher.close`) may or may not have reached Redis: it is
remembered as unreleased (``Held.unreleased``), so the next renewal or the
node's ``close`` gives it back, unless the node takes it again first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from scribeline.cluster.held import Held
from scribeline.cluster.redis_scripts import ACQUIRE, RELEASE

__all__ = ["MAX_BATCH", "SlotBatcher"]

#: Requests in one pipeline at most, so one round trip stays short.
MAX_BATCH = 1000


@dataclass(slots=True)
class _Request:
    key: str
    member: str
    #: The slot limit of an acquire; None for a release.
    limit: int | None
    #: The caller's answer; None when nobody waits (the release of a cancelled acquire).
    answer: asyncio.Future[bool] | None


class SlotBatcher:
    """Takes and gives back slots in Redis for one node (``held`` is what it holds)."""

    def __init__(
        self,
        client: Redis,
        held: Held,
        *,
        key: Callable[[str, str], str],
        full: Callable[[str], str],
        lease_ms: int,
    ) -> None:
        self._client = client
        self._held = held
        self._key = key
        self._full = full
        self._lease_ms = lease_ms
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._queue: list[_Request] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Send no further batch (``close`` ran out of time).
        self._cut = False

    async def acquire(self, key: str, limit: int, member: str) -> bool:
        """Take one of ``key``'s ``limit`` slots for ``member`` (the ACQUIRE script).

        Raises what the batch raised (``OUTAGE`` errors for the caller to
        degrade on).
        """
        try:
            return await self._ask(_Request(key, member, limit, None))
        except asyncio.CancelledError:
            # Admitted or not, nobody will release it: give it back after the acquire.
            self._submit(_Request(key, member, None, None))
            raise

    async def release(self, key: str, member: str) -> None:
        """Drop ``member``'s slot on ``key``, and its claim if it holds it."""
        await self._ask(_Request(key, member, None, None))

    async def close(self, grace: float) -> None:
        """Send what is queued and wait for it, ``grace`` seconds at most; what
        has not been answered by then is remembered as unreleased."""
        self._closed = True
        deadline = time.monotonic() + grace
        while self._task is not None and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait([self._task], timeout=left)
        if self._task is not None:
            self._cut = True
            self._task.cancel()  # its batch is remembered as it ends
            await asyncio.wait([self._task])
        self._fail(self._queue, asyncio.CancelledError())
        self._queue = []

    async def _ask(self, request: _Request) -> bool:
        if self._closed:
            raise RuntimeError("the slot batcher is closed")
        request.answer = asyncio.get_running_loop().create_future()
        self._submit(request)
        return await request.answer

    def _submit(self, request: _Request) -> None:
        if self._closed and self._task is None:
            self._fail([request], asyncio.CancelledError())
            return
        self._queue.append(request)
        if self._task is None:
            # Starts on the next loop iteration: what is asked in this one joins the batch.
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._queue and not self._cut:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                await self._send(batch)
        finally:
            self._task = None

    async def _send(self, batch: list[_Request]) -> None:
        try:
            try:
                results = await self._pipeline(batch)
            except NoScriptError:
                # Redis restarted or flushed its scripts. Running the batch again
                # is safe: each script gives the same result run twice in a row.
                for script in (self._acquire, self._release):
                    await self._client.script_load(script.script)
                results = await self._pipeline(batch)
            if len(results) != len(batch):  # never let a caller wait forever
                raise RuntimeError(f"{len(results)} answers to {len(batch)} slot requests")
        except BaseException as exc:
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for r, taken in zip(batch, results, strict=True):
            if r.answer is not None and not r.answer.done():
                r.answer.set_result(bool(taken))

    async def _pipeline(self, batch: list[_Request]) -> list[Any]:
        # EVALSHA directly: a pipeline that knows of its scripts asks Redis
        # whether it has them first, one more round trip per batch.
        if len(batch) == 1:  # no pipeline's cost for a lone request
            return [await self._client.evalsha(*self._command(batch[0]))]
        async with self._client.pipeline(transaction=False) as pipe:
            for r in batch:
                pipe.evalsha(*self._command(r))
            return list(await pipe.execute())

    def _command(self, r: _Request) -> tuple[str, int, *tuple[str | int, ...]]:
        """EVALSHA's arguments for ``r``."""
        if r.limit is not None:
            lim, member = self._key("lim", r.key), self._full(r.member)
            return self._acquire.sha, 1, lim, member, r.limit, self._lease_ms
        own = self._key("own", r.key)
        return self._release.sha, 2, self._key("lim", r.key), own, self._full(r.member)

    def _fail(self, batch: list[_Request], exc: BaseException) -> None:
        # Each may have reached Redis before the failure: give it back later.
        self._held.remember_unreleased([(r.key, r.member) for r in batch])
        for r in batch:
            if r.answer is None or r.answer.done():
                continue
            if isinstance(exc, Exception):
                r.answer.set_exception(exc)
            else:
                r.answer.cancel()
