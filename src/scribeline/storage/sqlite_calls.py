"""Calls on SQLite: creating them, their status changes, finding and listing them
(the live calls' snapshot reads each call's stream head in the same statement)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Any

from scribeline.domain import Call, CallPage
from scribeline.errors import CallEnded, Conflict, StreamClosed
from scribeline.events import NewEvent, StoredEvent
from scribeline.storage.rules import linked_outcome, list_cursor, status_filter
from scribeline.storage.sqlite_campaigns import complete_linked_contact, take_contact
from scribeline.storage.sqlite_db import SqliteDatabase
from scribeline.storage.sqlite_log import append_events

__all__ = ["SqliteCalls"]

_CALL_COLUMNS = (
    "id, org_id, assistant_id, call_sid, status, to_phone_number, customer_phone_number,"
    " call_type, started_at, ended_at, campaign_id, campaign_contact_id"
)


def _call(row: sqlite3.Row | tuple[Any, ...]) -> Call:
    return Call(*row)


class SqliteCalls:
    """The call methods of the SQLite backend's Catalog."""

    _db: SqliteDatabase

    async def set_call_status(self, call: Call, event: NewEvent) -> list[StoredEvent]:
        def run(conn: sqlite3.Connection) -> list[StoredEvent]:
            stored = append_events(conn, call.stream, [event])
            outcome = linked_outcome(call, event)
            if outcome is not None:
                stored += complete_linked_contact(conn, call, outcome, event.ts)
            return stored

        try:
            return await self._db.write(run)
        except StreamClosed:
            raise CallEnded(f"Call {call.call_sid} has ended") from None

    async def create_call(self, call: Call, initial: NewEvent) -> tuple[Call, list[StoredEvent]]:
        def run(conn: sqlite3.Connection) -> tuple[Call, list[StoredEvent]]:
            campaign_id = None
            campaign_events: list[StoredEvent] = []
            if call.campaign_contact_id is not None:
                campaign_id, campaign_events = take_contact(conn, call)
            try:
                cur = conn.execute(
                    "INSERT INTO calls (org_id, assistant_id, call_sid, status, to_phone_number,"
                    " customer_phone_number, call_type, started_at, ended_at, campaign_id,"
                    " campaign_contact_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        call.org_id,
                        call.assistant_id,
                        call.call_sid,
                        call.status,
                        call.to_phone_number,
                        call.customer_phone_number,
                        call.call_type,
                        call.started_at,
                        call.ended_at,
                        campaign_id,
                        call.campaign_contact_id,
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"Call {call.call_sid} already exists") from None
            assert cur.lastrowid is not None
            row = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
            created = _call(row)
            return created, append_events(conn, created.stream, [initial]) + campaign_events

        return await self._db.write(run)

    async def get_call(self, org_id: int, call_sid: str) -> Call | None:
        def run(conn: sqlite3.Connection) -> Call | None:
            row = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE org_id = ? AND call_sid = ?",
                (org_id, call_sid),
            ).fetchone()
            return None if row is None else _call(row)

        return self._db.read_now(run)

    async def list_calls(
        self,
        org_id: int | None,
        status: str | Collection[str] | None,
        limit: int,
        cursor: str | None,
    ) -> CallPage:
        return self._db.read_now(lambda c: self._calls_page(c, org_id, status, limit, cursor)[0])

    async def list_calls_at_heads(
        self, org_id: int, status: str | Collection[str] | None, limit: int, cursor: str | None
    ) -> tuple[CallPage, dict[str, int]]:
        return self._db.read_now(
            lambda c: self._calls_page(c, org_id, status, limit, cursor, heads=True)
        )

    @staticmethod
    def _calls_page(
        conn: sqlite3.Connection,
        org_id: int | None,
        status: str | Collection[str] | None,
        limit: int,
        cursor: str | None,
        heads: bool = False,
    ) -> tuple[CallPage, dict[str, int]]:
        before = list_cursor(cursor)
        statuses = status_filter(status)
        clauses: list[str] = ["1 = 1"]
        args: list[Any] = []
        if org_id is not None:
            clauses.append("org_id = ?")
            args.append(org_id)
        if statuses is not None:  # a handful at most: one IN list
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            args += statuses
        if before is not None:
            clauses.append("id < ?")
            args.append(before)
        # With the heads, one statement reads rows and heads as of one moment (a
        # call's status and its stream's head move in one transaction).
        head = ", coalesce(s.head, 0)" if heads else ""
        join = " LEFT JOIN streams s ON s.stream = 'call:' || calls.id" if heads else ""
        rows = conn.execute(
            f"SELECT {_CALL_COLUMNS}{head} FROM calls{join} WHERE {' AND '.join(clauses)}"
            " ORDER BY id DESC LIMIT ?",
            (*args, limit + 1),
        ).fetchall()
        calls: list[Call] = []
        found: dict[str, int] = {}
        for row in rows[:limit]:
            call = _call(row[:-1] if heads else row)
            calls.append(call)
            if heads:
                found[call.stream] = row[-1]
        more = len(rows) > limit
        return CallPage(calls, str(calls[-1].id) if more and calls else None), found
