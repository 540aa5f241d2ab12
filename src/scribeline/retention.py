"""The retention sweeper: deletes what outlived its organization's retention.

Every node runs one. Every ``interval`` seconds it deletes, batch after
batch (``RetentionStore.sweep_expired``: each one transaction of at most
``max_calls`` calls and bots and about ``max_events`` events), the calls and
meeting bots that ended more than ``retention_days`` ago, until none is
left. On PostgreSQL each batch takes an advisory lock for its transaction,
so one node sweeps at a time (the others find it held and wait for their
next turn), whether Redis is up or not; on SQLite there is one process.

Audit: one log line per organization and sweep with counts (calls, events,
bots), never a SID or any content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from scribeline.errors import StorageUnavailable
from scribeline.events import now_ms
from scribeline.storage.base_retention import Deleted, RetentionStore

__all__ = ["MAX_CALLS", "MAX_EVENTS", "RetentionSweeper"]

log = logging.getLogger(__name__)

#: Calls and bots deleted in one transaction at most.
MAX_CALLS = 200
#: About how many events one transaction deletes (a longer call goes alone).
MAX_EVENTS = 20_000


def _merge(totals: dict[int, Deleted], batch: list[Deleted]) -> None:
    for d in batch:
        t = totals.get(d.org_id, Deleted(d.org_id))
        totals[d.org_id] = Deleted(
            d.org_id, t.calls + d.calls, t.events + d.events, t.bots + d.bots
        )


class RetentionSweeper:
    """Runs :meth:`sweep` every ``interval`` seconds once started."""

    def __init__(
        self,
        storage: RetentionStore,
        interval: float,
        *,
        max_calls: int = MAX_CALLS,
        max_events: int = MAX_EVENTS,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._storage = storage
        self._interval = interval
        self._max_calls = max_calls
        self._max_events = max_events
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        #: Sweeps this node ran to the end (not counting turns another node held).
        self.sweeps = 0

    async def sweep(self) -> list[Deleted] | None:
        """Delete every expired call and bot now, in batches; what was deleted per
        organization, or None if another node was sweeping when this began."""
        totals: dict[int, Deleted] = {}
        while True:
            batch = await self._storage.sweep_expired(
                self._clock(), self._max_calls, self._max_events
            )
            if batch is None:  # another node holds the sweep; it goes on from here
                if not totals:
                    return None
                break
            _merge(totals, batch.deleted)
            if not batch.more:
                break
        for d in totals.values():
            log.info(
                "retention: org=%d deleted calls=%d events=%d bots=%d",
                d.org_id,
                d.calls,
                d.events,
                d.bots,
            )
        self.sweeps += 1
        return list(totals.values())

    def start(self) -> None:
        """Sweep every ``interval`` seconds, the first one an interval from now."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="retention")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except StorageUnavailable:
                log.warning("retention: the database is unavailable; the next turn retries")
            except Exception:
                log.exception("retention: a sweep failed; the next turn retries")

    async def close(self) -> None:
        """Stop sweeping (a batch in flight is rolled back, or committed)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
