"""Call deletion and retention sweeps on PostgreSQL (``base_retention``).

A deletion goes through the writer like any write; it locks the call's head
row first, as an append does, so it waits for an append in flight on any
node and the appends after it find the stream closed. A sweep batch runs in
a transaction of its own on a pooled connection, not in the writer's (a
batch of deletes would hold up this node's appends), under a
transaction-scoped advisory lock: one node at a time, released by the
COMMIT, or by the server if the node dies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scribeline.events import bot_stream, call_stream
from scribeline.storage.base_retention import SWEEP_LOCK, Budget, Deleted, Sweep, cutoff
from scribeline.storage.postgres_db import PostgresDatabase
from scribeline.storage.rules import CALL_TABLES

if TYPE_CHECKING:
    from asyncpg import Record

    from scribeline.storage.postgres_db import Conn

__all__ = ["PostgresRetention"]

_EXPIRED = (
    "SELECT r.id, coalesce(s.head, 0) FROM {table} r"
    " LEFT JOIN streams s ON s.stream = '{kind}:' || r.id"
    " WHERE r.org_id = $1 AND r.ended_at < $2 ORDER BY r.ended_at, r.id LIMIT $3"
)


def _pairs(rows: list[Record]) -> list[tuple[int, int]]:
    return [(row[0], row[1]) for row in rows]


def _count(status: str) -> int:
    """The row count of a command status (``DELETE 12``)."""
    return int(status.rsplit(" ", 1)[-1])


async def _delete_streams(conn: Conn, tables: tuple[str, ...], streams: list[str]) -> int:
    """Delete the streams' rows from ``tables`` and close their head rows (the
    tombstones); the number of events deleted."""
    if not streams:
        return 0
    events = 0
    for table in tables:
        status = await conn.execute(f"DELETE FROM {table} WHERE stream = ANY($1::text[])", streams)
        if table == "events":
            events = _count(status)
    await conn.execute(
        "UPDATE streams SET closed = true WHERE stream = ANY($1::text[]) AND NOT closed", streams
    )
    return events


async def _sweep(conn: Conn, now: int, budget: Budget) -> Sweep:
    orgs = await conn.fetch(
        "SELECT id, retention_days FROM organizations WHERE retention_days IS NOT NULL ORDER BY id"
    )
    deleted: list[Deleted] = []
    for org_id, days in orgs:
        if budget.exhausted:
            break
        before = cutoff(now, days)
        sql = _EXPIRED.format(table="calls", kind="call")
        calls = budget.take(_pairs(await conn.fetch(sql, org_id, before, budget.calls + 1)))
        events = await _delete_streams(conn, CALL_TABLES, [call_stream(c) for c in calls])
        await conn.execute("DELETE FROM calls WHERE id = ANY($1::int8[])", calls)
        bots: list[int] = []
        if not budget.exhausted:
            sql = _EXPIRED.format(table="bots", kind="bot")
            bots = budget.take(_pairs(await conn.fetch(sql, org_id, before, budget.calls + 1)))
            events += await _delete_streams(conn, CALL_TABLES, [bot_stream(b) for b in bots])
            await conn.execute("DELETE FROM bots WHERE id = ANY($1::int8[])", bots)
        if calls or bots:
            deleted.append(Deleted(org_id, len(calls), events, len(bots)))
    return Sweep(deleted, budget.exhausted)


class PostgresRetention:
    """The RetentionStore methods of the PostgreSQL backend."""

    _db: PostgresDatabase

    async def delete_call(self, org_id: int, call_id: int) -> int | None:
        stream = call_stream(call_id)

        async def run(conn: Conn) -> int | None:
            await conn.execute("SELECT 1 FROM streams WHERE stream = $1 FOR UPDATE", stream)
            gone = await conn.fetchval(
                "DELETE FROM calls WHERE id = $1 AND org_id = $2 RETURNING id", call_id, org_id
            )
            if gone is None:
                return None
            return await _delete_streams(conn, CALL_TABLES, [stream])

        return await self._db.write(run)

    async def sweep_expired(self, now: int, max_calls: int, max_events: int) -> Sweep | None:
        async def run(conn: Conn) -> Sweep | None:
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
                    return None
                return await _sweep(conn, now, Budget(max_calls, max_events))

        # A connection of its own (``read`` hands one out), not the writer's batch.
        return await self._db.read(run)
