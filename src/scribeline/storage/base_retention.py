"""Deleting calls: one on request, and every organization's expired ones.

``RetentionStore`` is the contract both backends honour (``tests/contract``):

* ``delete_call`` removes one call and every row of it that any feature keeps
  (``rules.CALL_TABLES``) in one transaction. The call's ``streams`` row
  stays, closed, as a tombstone: an append through a node's stale copy of
  the call is refused (``StreamClosed``) instead of starting a new stream,
  and the call's id never names another call (the ids are never reused).
* ``sweep_expired`` deletes, in one transaction, one bounded batch of the
  calls and meeting bots that ended more than their organization's
  ``retention_days`` ago (with their events; bots' rows go too, their
  streams stay as tombstones). On PostgreSQL the transaction first takes a
  transaction-scoped advisory lock (``SWEEP_LOCK``) and returns None without
  doing anything when another node holds it: one node sweeps at a time,
  with or without Redis, and a crashed sweeper's lock goes with its
  connection.

The helpers here are the decisions both backends make alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "DAY_MS",
    "SWEEP_LOCK",
    "Budget",
    "Deleted",
    "RetentionStore",
    "Sweep",
    "cutoff",
]

#: Milliseconds in a retention day.
DAY_MS = 86_400_000
#: ``pg_try_advisory_xact_lock`` key of a retention sweep (any constant:
#: "retain"), distinct from the migrations' lock.
SWEEP_LOCK = 0x72657461696E


def cutoff(now: int, days: int) -> int:
    """Calls and bots that ended before this (epoch ms) have expired."""
    return now - days * DAY_MS


@dataclass(frozen=True, slots=True)
class Deleted:
    """What a sweep deleted of one organization: counts, never content."""

    org_id: int
    calls: int = 0
    events: int = 0
    bots: int = 0


@dataclass(frozen=True, slots=True)
class Sweep:
    """One batch of a sweep: what it deleted per organization (only those with
    deletions), and whether it stopped at its bounds (more may have expired)."""

    deleted: list[Deleted] = field(default_factory=list)
    more: bool = False


@dataclass(slots=True)
class Budget:
    """The bounds of one batch: at most ``calls`` calls and bots, and about
    ``events`` events (counted by their streams' heads); the first stream of a
    batch is taken whatever its length, so that every batch makes progress."""

    calls: int
    events: int
    taken: int = 0
    exhausted: bool = False

    def take(self, rows: Iterable[tuple[int, int]]) -> list[int]:
        """The ids of ``(id, head)`` rows (oldest first) that fit; marks the budget
        exhausted when one did not."""
        ids: list[int] = []
        for row_id, head in rows:
            if self.calls <= 0 or (self.taken and head > self.events):
                self.exhausted = True
                break
            ids.append(row_id)
            self.calls -= 1
            self.events -= head
            self.taken += 1
        return ids


class RetentionStore(ABC):
    """Call deletion and retention sweeps."""

    @abstractmethod
    async def delete_call(self, org_id: int, call_id: int) -> int | None:
        """Delete the organization's call ``call_id`` and its per-call rows, keeping
        its stream's head row closed (a tombstone). The number of events deleted;
        None if the organization has no such call (nothing changed)."""

    @abstractmethod
    async def sweep_expired(self, now: int, max_calls: int, max_events: int) -> Sweep | None:
        """Delete one batch (``Budget``) of expired calls and bots, oldest first,
        as of ``now`` (epoch ms). None: another node is sweeping (PostgreSQL)."""
