"""Call deletion and retention sweeps on SQLite (``base_retention``): each a
write on the one writer thread, so one process sweeps, one batch at a time."""

from __future__ import annotations

import sqlite3

from scribeline.events import bot_stream, call_stream
from scribeline.storage.base_retention import Budget, Deleted, Sweep, cutoff
from scribeline.storage.rules import CALL_TABLES
from scribeline.storage.sqlite_db import SqliteDatabase

__all__ = ["SqliteRetention"]

_EXPIRED = (
    "SELECT r.id, coalesce(s.head, 0) FROM {table} r"
    " LEFT JOIN streams s ON s.stream = '{kind}:' || r.id"
    " WHERE r.org_id = ? AND r.ended_at < ? ORDER BY r.ended_at, r.id LIMIT ?"
)


def _delete_streams(conn: sqlite3.Connection, tables: tuple[str, ...], streams: list[str]) -> int:
    """Delete the streams' rows from ``tables`` and close their head rows (the
    tombstones); the number of events deleted."""
    events = 0
    for table in tables:
        cur = conn.executemany(f"DELETE FROM {table} WHERE stream = ?", [(s,) for s in streams])
        if table == "events":
            events = cur.rowcount
    conn.executemany(
        "UPDATE streams SET closed = 1 WHERE stream = ? AND NOT closed", [(s,) for s in streams]
    )
    return events


def _sweep(conn: sqlite3.Connection, now: int, budget: Budget) -> Sweep:
    orgs = conn.execute(
        "SELECT id, retention_days FROM organizations WHERE retention_days IS NOT NULL ORDER BY id"
    ).fetchall()
    deleted: list[Deleted] = []
    for org_id, days in orgs:
        if budget.exhausted:
            break
        before = cutoff(now, days)
        sql = _EXPIRED.format(table="calls", kind="call")
        calls = budget.take(conn.execute(sql, (org_id, before, budget.calls + 1)))
        events = _delete_streams(conn, CALL_TABLES, [call_stream(c) for c in calls])
        conn.executemany("DELETE FROM calls WHERE id = ?", [(c,) for c in calls])
        bots: list[int] = []
        if not budget.exhausted:
            sql = _EXPIRED.format(table="bots", kind="bot")
            bots = budget.take(conn.execute(sql, (org_id, before, budget.calls + 1)))
            events += _delete_streams(conn, CALL_TABLES, [bot_stream(b) for b in bots])
            conn.executemany("DELETE FROM bots WHERE id = ?", [(b,) for b in bots])
        if calls or bots:
            deleted.append(Deleted(org_id, len(calls), events, len(bots)))
    return Sweep(deleted, budget.exhausted)


class SqliteRetention:
    """The RetentionStore methods of the SQLite backend."""

    _db: SqliteDatabase

    async def delete_call(self, org_id: int, call_id: int) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            gone = conn.execute(
                "DELETE FROM calls WHERE id = ? AND org_id = ? RETURNING id", (call_id, org_id)
            ).fetchone()
            if gone is None:
                return None
            return _delete_streams(conn, CALL_TABLES, [call_stream(call_id)])

        return await self._db.write(run)

    async def sweep_expired(self, now: int, max_calls: int, max_events: int) -> Sweep | None:
        return await self._db.write(lambda conn: _sweep(conn, now, Budget(max_calls, max_events)))
