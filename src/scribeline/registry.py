"""Every open WebSocket of the process: keep-alive pings, cluster-wide connection
limits, the index of connections by the key that authenticated them (so that a
revoked key closes its connections), the tasks that serve them, and closing them
all at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any

from scribeline.cluster import Cluster
from scribeline.cluster.memory import MemoryCluster
from scribeline.connection import Connection
from scribeline.metrics import ConnectionStats
from scribeline.protocols.frames import PING_FRAME

__all__ = ["KeyCheck", "Registry"]

log = logging.getLogger(__name__)

#: Which of these key ids are no longer active (revoked, expired or gone).
KeyCheck = Callable[[Collection[int]], Awaitable[set[int]]]
#: How many revoked key ids the registry remembers at most (see ``Registry.bind``).
_REVOKED_MEMORY = 10_000


class Registry:
    """Every open connection of the process: keep-alive pings, limits, revoked
    keys, shutdown.

    Limits are counted across the cluster (``cluster``; alone: this process).
    Connections are indexed by the key that authenticated them: a revocation
    notice closes that key's connections without looking at any other, and a
    periodic re-check of the keys in the index closes those of a revocation
    this node never heard of (a missed notice; ``keys revoke`` run without a
    broker URL): one batched look-up per interval for all of them.

    A revoked key is remembered for one re-check interval (at most
    ``_REVOKED_MEMORY`` keys): a connection whose join was authenticating the
    key when the notice came is closed as it binds, not at the next re-check.
    """

    def __init__(
        self, ping_interval: float, ping_timeout: float, cluster: Cluster | None = None
    ) -> None:
        self._connections: set[Connection] = set()
        #: Tasks serving connections (joins, producers, answers, leaves): awaited at shutdown.
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Shutting down: no new connection is accepted (``close_all`` has begun).
        self.stopping = False
        self._by_key: dict[int, set[Connection]] = {}
        self._cluster = cluster or MemoryCluster()
        self._interval = ping_interval
        self._timeout = ping_timeout
        self._task: asyncio.Task[None] | None = None
        self._recheck_task: asyncio.Task[None] | None = None
        #: Recently revoked key ids -> when (monotonic), oldest first.
        self._revoked: dict[int, float] = {}
        self._revoked_window = 5.0
        #: Joins, refusals and slow-consumer closes by protocol (for metrics).
        self.stats = ConnectionStats()

    def __len__(self) -> int:
        return len(self._connections)

    def protocols(self) -> Counter[str]:
        """Open connections by protocol (for metrics: counted when asked)."""
        return Counter(conn.kind for conn in self._connections)

    def add(self, conn: Connection) -> None:
        self._connections.add(conn)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` for a connection as a task that shutdown waits for."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def discard(self, conn: Connection) -> None:
        self._connections.discard(conn)
        if conn.key_id is not None:
            same_key = self._by_key.get(conn.key_id)
            if same_key is not None:
                same_key.discard(conn)
                if not same_key:
                    del self._by_key[conn.key_id]

    def bind(self, conn: Connection, key_id: int) -> None:
        """Index ``conn`` under the key that authenticated it (``Connection.authenticated``);
        close it instead if that key was revoked while its join authenticated."""
        if conn not in self._connections:  # it closed while its join authenticated
            return
        if key_id in self._revoked and self._forget_revoked(time.monotonic(), key_id):
            conn.revoke()
            return
        self._by_key.setdefault(key_id, set()).add(conn)

    def _forget_revoked(self, now: float, key_id: int | None = None) -> bool:
        """Drop the revocations older than the window; whether ``key_id``'s is left."""
        horizon = now - self._revoked_window
        revoked = self._revoked
        while revoked:
            oldest, at = next(iter(revoked.items()))
            if at > horizon and len(revoked) <= _REVOKED_MEMORY:
                break
            del revoked[oldest]
        return key_id in revoked

    def close_key(self, key_id: int) -> int:
        """Close every connection authenticated by key ``key_id`` (it was revoked);
        how many there were. Never waits."""
        now = time.monotonic()
        self._revoked.pop(key_id, None)  # re-inserted last: the dict stays oldest first
        self._revoked[key_id] = now
        self._forget_revoked(now)
        conns = self._by_key.pop(key_id, ())
        for conn in conns:
            conn.revoke()
        if conns:
            log.info("closing %d connections of revoked key %d", len(conns), key_id)
        return len(conns)

    async def acquire(self, key: str, limit: int, conn: Connection) -> bool:
        """Count ``conn`` on ``key`` unless ``limit`` connections (cluster-wide) already are."""
        return await self._cluster.acquire(key, limit, conn.member)

    async def release(self, key: str, conn: Connection) -> None:
        """Stop counting ``conn`` on ``key``."""
        await self._cluster.release(key, conn.member)

    def start(self, inactive: KeyCheck | None = None, recheck_interval: float = 5.0) -> None:
        """Start the keep-alive pings and, with ``inactive``, re-checking every
        ``recheck_interval`` seconds that the keys of open connections are still
        active (revoked keys are remembered that long: see :meth:`bind`)."""
        loop = asyncio.get_running_loop()
        self._revoked_window = recheck_interval
        self._task = loop.create_task(self._keepalive())
        if inactive is not None:
            self._recheck_task = loop.create_task(self._recheck(inactive, recheck_interval))

    async def _recheck(self, inactive: KeyCheck, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.recheck(inactive)

    async def recheck(self, inactive: KeyCheck) -> int:
        """Close the connections of every indexed key that is no longer active (one
        call of ``inactive`` for them all); how many keys were. If they cannot be
        checked now (storage is down), none is closed."""
        if not self._by_key:
            return 0
        try:
            gone = await inactive(list(self._by_key))
        except Exception as exc:
            log.warning("cannot re-check the keys of open connections: %s", type(exc).__name__)
            return 0
        gone &= self._by_key.keys()  # not those whose connections closed meanwhile
        for key_id in gone:
            self.close_key(key_id)
        return len(gone)

    async def _keepalive(self) -> None:
        # One timer for the whole process, one shared ping frame.
        tick = min(max(min(self._interval, self._timeout) / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for conn in list(self._connections):
                if conn.closing:
                    continue
                if conn.ping_sent_at:
                    if now - conn.ping_sent_at >= self._timeout:
                        log.info("dropping a peer that did not answer a ping", extra=conn.log_extra)
                        conn.abort()
                elif now - conn.last_ping >= self._interval:
                    conn.last_ping = conn.ping_sent_at = now
                    conn.write(PING_FRAME)

    async def close_all(self, code: int, drain_seconds: float = 10.0) -> None:
        """Close every connection with ``code`` (server shutdown: 1001) and wait, at
        most ``drain_seconds``, for the tasks serving them."""
        self.stopping = True
        for task in (self._task, self._recheck_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        conns = list(self._connections)
        if conns:
            await asyncio.gather(*(c.close(code) for c in conns), return_exceptions=True)
        # The endpoints' tasks end with their connections (leaving their streams),
        # including the tasks those start meanwhile; one stuck past
        # ``drain_seconds`` is cancelled.
        deadline = asyncio.get_running_loop().time() + drain_seconds
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                stuck = list(self._tasks)
                for task in stuck:
                    task.cancel()
                await asyncio.wait(stuck)
                break
            await asyncio.wait(list(self._tasks), timeout=left)
