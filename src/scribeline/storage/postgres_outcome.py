"""What became of a transaction whose COMMIT was sent but whose reply was lost.

A connection that breaks after COMMIT left the client leaves the outcome
unknown: the server may have committed (the reply was lost on the way back)
or not (the COMMIT never arrived, or the server crashed first). Reporting
such writes as failed makes a producer retry an event that is already stored
(stored twice, under a new seq) and keeps the first copy from being
published; reporting them as done would be a false acknowledgement when the
server never committed. So the writer asks.

Before sending COMMIT, the writer reads the transaction's id (a 64-bit
``xid8``, which does not wrap around; PostgreSQL 13 or later; once assigned
it stays for the whole transaction) and its server process id: in the
statement that writes a group of appends (``postgres_log``), or else with
:func:`transaction_of`. When the outcome is unknown, :func:`committed` asks
``pg_xact_status(xid)`` on a fresh connection:

* ``committed``: the writes are stored; their callers get their results.
* ``aborted``: nothing was stored; a retry is safe.
* ``in progress``: the server has not seen the end of the transaction yet
  (it is still committing, or it has not noticed that the client is gone,
  as when a network path dies silently). It is asked again; after
  ``IN_PROGRESS_GRACE`` the orphaned server process is terminated
  (``pg_terminate_backend``, only if it still holds this transaction), which
  settles the outcome for good: a commit already under way completes, and
  anything else is rolled back.
* The server restarted in between (a crash, or a failover to another
  server): unknown, at once. Its answer cannot be trusted: an id whose
  transaction never reached the disk before a crash is handed out again
  after it, and another transaction's commit would read as ours. A restart
  is told by the postmaster's start time and, for a crash that reinitializes
  the server without restarting the postmaster, by the time its shared
  statistics were last reset (reset on every crash recovery); both are read
  with the id. (An operator resetting those statistics makes the answer
  unknown too: the safe way to be wrong.)
* No answer within ``OUTCOME_TIMEOUT`` (the server is unreachable): unknown.

An unknown outcome is reported as unavailable. These are the cases in which
a write reported unavailable may have been stored: the server crashed or
failed over with the COMMIT in flight, or could not be reached to ask.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn

__all__ = [
    "IN_PROGRESS_GRACE",
    "OUTCOME_TIMEOUT",
    "TRANSACTION_COLUMNS",
    "Transaction",
    "committed",
    "transaction_from",
    "transaction_of",
]

log = logging.getLogger(__name__)

#: How long the writer keeps asking before it reports the outcome unknown.
OUTCOME_TIMEOUT = 5.0
#: How long a transaction may stay in progress before its server process is ended.
IN_PROGRESS_GRACE = 1.0
#: First pause between questions (doubling up to the last).
_RETRY_FIRST, _RETRY_LAST = 0.02, 0.25

_STATUS = """
SELECT CASE WHEN pg_postmaster_start_time() = $2
             AND pg_stat_get_bgwriter_stat_reset_time() IS NOT DISTINCT FROM $3
       THEN pg_xact_status($1::text::xid8) ELSE 'restarted' END
"""
_TERMINATE = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE pid = $1 AND backend_xid::text = $2
"""


@dataclass(frozen=True, slots=True)
class Transaction:
    """An open transaction: its id (``xid8``, as text), its server process, and
    what tells the server's restarts apart (see the module's docstring)."""

    xid: str
    pid: int
    started: datetime
    stats_reset: datetime | None


#: The columns of a :class:`Transaction` after its id, for a statement that
#: reads them on its way (the writer's append statement does, which saves a
#: round trip per commit).
TRANSACTION_COLUMNS = (
    "pg_backend_pid(), pg_postmaster_start_time(), pg_stat_get_bgwriter_stat_reset_time()"
)


async def transaction_of(conn: Conn) -> Transaction | None:
    """The transaction open on ``conn``; None if it has written nothing (it has no
    id then, and its outcome does not matter: it stored nothing)."""
    row = await conn.fetchrow(
        f"SELECT pg_current_xact_id_if_assigned()::text, {TRANSACTION_COLUMNS}"
    )
    return transaction_from(row)


def transaction_from(row: asyncpg.Record | None) -> Transaction | None:
    """The :class:`Transaction` of a row of its id (text, or None: nothing
    written) followed by ``TRANSACTION_COLUMNS``."""
    assert row is not None
    return None if row[0] is None else Transaction(*row[:4])


async def committed(pool: asyncpg.Pool, xact: Transaction) -> bool:
    """Whether ``xact`` committed, asked on fresh connections of ``pool``.

    False when it did not, and when that could not be learnt within
    ``OUTCOME_TIMEOUT`` (the caller then reports the outcome unknown).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OUTCOME_TIMEOUT
    grace = loop.time() + IN_PROGRESS_GRACE
    pause, why = _RETRY_FIRST, "no answer"
    while loop.time() < deadline:
        try:
            async with asyncio.timeout_at(deadline):
                status = await _status(pool, xact, end_it=loop.time() >= grace)
        except TimeoutError:
            break
        except Exception as exc:  # most likely the server is not back yet: ask again
            status, why = "no answer", type(exc).__name__
        if status == "committed":
            return True
        if status == "restarted":
            why = "the server restarted"
            break
        if status not in ("in progress", "no answer"):  # aborted (None: too old to know)
            return False
        if status == "in progress":
            why = "still in progress"
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 2, _RETRY_LAST)
    log.warning("a COMMIT's outcome stayed unknown (%s); its writes are reported unavailable", why)
    return False


async def _status(pool: asyncpg.Pool, xact: Transaction, end_it: bool) -> str | None:
    """``pg_xact_status`` of ``xact`` (``restarted`` if the server restarted since);
    if it is still in progress and ``end_it``, end its server process so that
    the next answer is final."""
    async with pool.acquire() as conn:
        status: str | None = await conn.fetchval(_STATUS, xact.xid, xact.started, xact.stats_reset)
        if status == "in progress" and end_it:
            # Compared with the process's 32-bit xid: a recycled pid is left alone.
            low = str(int(xact.xid) & 0xFFFFFFFF)
            if await conn.fetchval(_TERMINATE, xact.pid, low):
                log.warning("ended the server process of a transaction whose client was lost")
        return status
