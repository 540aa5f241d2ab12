"""Webhook endpoints and their outbox on SQLite (``base_webhooks`` has the contract).

One process owns the file and one thread writes it, so a claim needs no row
locks: it is one ``UPDATE ... RETURNING`` through the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from scribeline.errors import Conflict
from scribeline.events import now_ms
from scribeline.storage.base_webhooks import (
    Attempt,
    Claim,
    Delivery,
    Endpoint,
    EndpointChange,
    Finish,
    Replay,
)
from scribeline.storage.sqlite_db import SqliteDatabase
from scribeline.storage.webhook_sql import (
    ENDPOINT_COLUMNS,
    HEADS,
    OPEN,
    PURGE_BATCH,
    ROW_COLUMNS,
    claim_filter,
    delivery_of,
    endpoint_of,
    settled_state,
    subject_sql,
)

__all__ = ["SqliteWebhooks"]


def _claim(
    conn: sqlite3.Connection, now: int, lease_ms: int, token: str, limit: int
) -> list[Claim]:
    rows = conn.execute(
        f"{HEADS} UPDATE webhook_outbox SET state = 'sending', lease_until = ?1, lease_token = ?2,"
        " attempts = attempts + 1"
        f" WHERE id IN (SELECT o.id FROM webhook_outbox o WHERE {claim_filter('?3')}"
        "   ORDER BY o.next_attempt_at, o.id LIMIT ?4)"
        " RETURNING id, endpoint_id, stream, seq, event_type, attempts, created_at",
        (now + lease_ms, token, now, limit),
    ).fetchall()
    claims = []
    for outbox_id, endpoint_id, stream, seq, event_type, attempts, created_at in sorted(rows):
        url, sealed, org_id = conn.execute(
            "SELECT url, secret_sealed, org_id FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        found = conn.execute(
            "SELECT type, ts, data FROM events WHERE stream = ? AND seq = ?", (stream, seq)
        ).fetchone()
        stored = None if found is None else (found[0], found[1], orjson.loads(found[2]))
        subject = None
        query = subject_sql(stream, "?")
        if query is not None:
            named = conn.execute(query[0], (query[1],)).fetchone()
            subject = None if named is None else named[0]
        claims.append(
            Claim(
                outbox_id,
                endpoint_id,
                url,
                bytes(sealed),
                org_id,
                stream,
                seq,
                event_type,
                attempts,
                created_at,
                token,
                stored,
                subject,
            )
        )
    return claims


def _finish(conn: sqlite3.Connection, finish: Finish, disable_after_ms: int) -> bool:
    done = finish.at + finish.duration_ms
    conn.execute(
        "INSERT INTO webhook_attempts (outbox_id, at, status, error, duration_ms)"
        " SELECT id, ?, ?, ?, ? FROM webhook_outbox WHERE id = ?",
        (finish.at, finish.status, finish.error, finish.duration_ms, finish.outbox_id),
    )
    held = conn.execute(
        "SELECT 1 FROM webhook_outbox WHERE id = ? AND lease_token = ? AND state = 'sending'",
        (finish.outbox_id, finish.token),
    ).fetchone()
    if held is None:  # fenced: the lease expired and another attempt holds the row
        return False
    state, next_at = settled_state(finish)
    conn.execute(
        "UPDATE webhook_outbox SET state = ?1, next_attempt_at = ?2, lease_until = NULL,"
        " lease_token = NULL, delivered_at = CASE WHEN ?1 = 'delivered' THEN ?3 END"
        " WHERE id = ?4",
        (state, next_at, done, finish.outbox_id),
    )
    if finish.delivered:
        conn.execute(
            "UPDATE webhook_endpoints SET failing_since = NULL"
            " WHERE id = ? AND failing_since IS NOT NULL",
            (finish.endpoint_id,),
        )
        return False
    conn.execute(
        "UPDATE webhook_endpoints SET failing_since = ? WHERE id = ? AND failing_since IS NULL",
        (finish.at, finish.endpoint_id),
    )
    if state != "dead":
        return False
    disabled = conn.execute(
        "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = 'failing', updated_at = ?"
        " WHERE id = ? AND enabled AND failing_since <= ? RETURNING id",
        (done, finish.endpoint_id, done - disable_after_ms),
    ).fetchone()
    return disabled is not None


def _replay(conn: sqlite3.Connection, endpoint_id: int, replay: Replay, now: int, most: int) -> int:
    if replay.ids:
        marks = ",".join("?" * len(replay.ids))
        chosen, args = f"id IN ({marks})", list(replay.ids)
    else:
        chosen = "created_at >= ? AND created_at < ?"
        args = [replay.since or 0, replay.until if replay.until is not None else now + 1]
    cur = conn.execute(
        "INSERT INTO webhook_outbox (endpoint_id, stream, seq, event_type, state, attempts,"
        " next_attempt_at, created_at)"
        " SELECT endpoint_id, stream, seq, event_type, 'pending', 0, ?, ? FROM webhook_outbox o"
        f" WHERE endpoint_id = ? AND state IN ('delivered', 'dead') AND {chosen}"
        f"  AND NOT EXISTS (SELECT 1 FROM webhook_outbox p WHERE p.endpoint_id = o.endpoint_id"
        f"   AND p.stream = o.stream AND p.seq = o.seq AND p.{OPEN})"
        " GROUP BY stream, seq, event_type ORDER BY min(id) LIMIT ?",
        (now, now, endpoint_id, *args, most),
    )
    return cur.rowcount


class SqliteWebhooks:
    """The WebhookStore methods of the SQLite backend."""

    _db: SqliteDatabase

    async def create_webhook(
        self, org_id: int, url: str, events: Sequence[str], secret_sealed: bytes, most: int
    ) -> Endpoint:
        def run(conn: sqlite3.Connection) -> Endpoint:
            (count,) = conn.execute(
                "SELECT count(*) FROM webhook_endpoints WHERE org_id = ?", (org_id,)
            ).fetchone()
            if count >= most:
                raise Conflict(f"An organization has at most {most} webhook endpoints")
            now = now_ms()
            row = conn.execute(
                "INSERT INTO webhook_endpoints (org_id, url, events, secret_sealed, enabled,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)"
                f" RETURNING {ENDPOINT_COLUMNS}",
                (org_id, url, orjson.dumps(list(events)).decode(), secret_sealed, now, now),
            ).fetchone()
            return endpoint_of(row)

        return await self._db.write(run)

    async def list_webhooks(self, org_id: int) -> list[Endpoint]:
        def run(conn: sqlite3.Connection) -> list[Endpoint]:
            rows = conn.execute(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = ? ORDER BY id",
                (org_id,),
            )
            return [endpoint_of(row) for row in rows]

        return self._db.read_now(run)

    async def get_webhook(self, org_id: int, endpoint_id: int) -> Endpoint | None:
        def run(conn: sqlite3.Connection) -> Endpoint | None:
            row = conn.execute(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ? AND org_id = ?",
                (endpoint_id, org_id),
            ).fetchone()
            return None if row is None else endpoint_of(row)

        return self._db.read_now(run)

    async def update_webhook(
        self, org_id: int, endpoint_id: int, change: EndpointChange
    ) -> Endpoint | None:
        sets: dict[str, Any] = {"updated_at": now_ms()}
        if change.url is not None:
            sets["url"] = change.url
        if change.events is not None:
            sets["events"] = orjson.dumps(list(change.events)).decode()
        if change.enabled is not None:
            sets["enabled"] = change.enabled
            if change.enabled:
                sets |= {"disabled_reason": None, "failing_since": None}
            else:
                sets["disabled_reason"] = "disabled"

        def run(conn: sqlite3.Connection) -> Endpoint | None:
            columns = ", ".join(f"{name} = ?" for name in sets)  # names are constants
            row = conn.execute(
                f"UPDATE webhook_endpoints SET {columns} WHERE id = ? AND org_id = ?"
                f" RETURNING {ENDPOINT_COLUMNS}",
                (*sets.values(), endpoint_id, org_id),
            ).fetchone()
            return None if row is None else endpoint_of(row)

        return await self._db.write(run)

    async def delete_webhook(self, org_id: int, endpoint_id: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM webhook_endpoints WHERE id = ? AND org_id = ?", (endpoint_id, org_id)
            )
            return cur.rowcount > 0

        return await self._db.write(run)

    async def claim_deliveries(
        self, now: int, lease_ms: int, token: str, limit: int
    ) -> list[Claim]:
        return await self._db.write(lambda conn: _claim(conn, now, lease_ms, token, limit))

    async def finish_delivery(self, finish: Finish, disable_after_ms: int) -> bool:
        return await self._db.write(lambda conn: _finish(conn, finish, disable_after_ms))

    async def list_deliveries(
        self, org_id: int, endpoint_id: int, before: int | None, limit: int
    ) -> list[Delivery] | None:
        def run(conn: sqlite3.Connection) -> list[Delivery] | None:
            owner = conn.execute(
                "SELECT 1 FROM webhook_endpoints WHERE id = ? AND org_id = ?",
                (endpoint_id, org_id),
            ).fetchone()
            if owner is None:
                return None
            rows = conn.execute(
                f"SELECT {ROW_COLUMNS} FROM webhook_outbox WHERE endpoint_id = ? AND id < ?"
                " ORDER BY id DESC LIMIT ?",
                (endpoint_id, before if before is not None else 2**63 - 1, limit),
            ).fetchall()
            log: dict[int, list[Attempt]] = {row[0]: [] for row in rows}
            if log:
                marks = ",".join("?" * len(log))
                for outbox_id, at, status, error, ms in conn.execute(
                    "SELECT outbox_id, at, status, error, duration_ms FROM webhook_attempts"
                    f" WHERE outbox_id IN ({marks}) ORDER BY outbox_id, id",
                    list(log),
                ):
                    log[outbox_id].append(Attempt(at, status, error, ms))
            return [delivery_of(row, log[row[0]]) for row in rows]

        return await self._db.read(run)

    async def replay_deliveries(
        self, org_id: int, endpoint_id: int, replay: Replay, now: int, most: int
    ) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            owner = conn.execute(
                "SELECT 1 FROM webhook_endpoints WHERE id = ? AND org_id = ?",
                (endpoint_id, org_id),
            ).fetchone()
            if owner is None:
                return None
            return _replay(conn, endpoint_id, replay, now, most)

        return await self._db.write(run)

    async def purge_deliveries(self, before: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM webhook_outbox WHERE id IN (SELECT id FROM webhook_outbox"
                " WHERE state IN ('delivered', 'dead') AND created_at < ? LIMIT ?)",
                (before, PURGE_BATCH),
            )
            return cur.rowcount

        return await self._db.write(run)
