"""Webhook endpoints and their outbox on PostgreSQL (``base_webhooks`` has the contract).

Every node claims: ``FOR UPDATE SKIP LOCKED`` lets claims that run at the same
moment share the due rows without waiting on each other, and a row another
node claimed a moment ago no longer passes the claim's filter when it is
locked (PostgreSQL checks the newest version of a row it locks), so one row
never goes to two claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
from scribeline.storage.postgres_db import PostgresDatabase
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
)

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn

__all__ = ["PostgresWebhooks"]

_KEY = "split_part(o.stream, ':', 2)::int8"
_CLAIM = f"""
{HEADS}, due AS (
  SELECT o.id, o.endpoint_id, o.stream, o.seq FROM webhook_outbox o
  WHERE {claim_filter("$3")}
  ORDER BY o.next_attempt_at, o.id LIMIT $4
  FOR UPDATE OF o SKIP LOCKED
)
UPDATE webhook_outbox o SET state = 'sending', lease_until = $1, lease_token = $2,
  attempts = o.attempts + 1
FROM due JOIN webhook_endpoints w ON w.id = due.endpoint_id
  LEFT JOIN events ev ON ev.stream = due.stream AND ev.seq = due.seq
WHERE o.id = due.id
RETURNING o.id, o.endpoint_id, w.url, w.secret_sealed, w.org_id, o.stream, o.seq, o.event_type,
  o.attempts, o.created_at, ev.type, ev.ts, ev.data,
  CASE split_part(o.stream, ':', 1)
    WHEN 'call' THEN (SELECT call_sid FROM calls WHERE id = {_KEY})
    WHEN 'bot' THEN (SELECT public_id FROM bots WHERE id = {_KEY})
  END
"""


def _claim_of(row: Any, token: str) -> Claim:
    stored = None if row[10] is None else (row[10], row[11], orjson.loads(row[12]))
    return Claim(
        row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6], row[7], row[8], row[9],
        token, stored, row[13],
    )  # fmt: skip


async def _finish(conn: Conn, finish: Finish, disable_after_ms: int) -> bool:
    done = finish.at + finish.duration_ms
    await conn.execute(
        "INSERT INTO webhook_attempts (outbox_id, at, status, error, duration_ms)"
        " SELECT id, $2, $3, $4, $5 FROM webhook_outbox WHERE id = $1",
        finish.outbox_id,
        finish.at,
        finish.status,
        finish.error,
        finish.duration_ms,
    )
    state, next_at = settled_state(finish)
    # Fenced: only while this attempt's token still holds the row.
    settled = await conn.fetchval(
        "UPDATE webhook_outbox SET state = $3, lease_until = NULL, lease_token = NULL,"
        " delivered_at = CASE WHEN $3 = 'delivered' THEN $4::int8 END, next_attempt_at = $5"
        " WHERE id = $1 AND lease_token = $2 AND state = 'sending' RETURNING id",
        finish.outbox_id,
        finish.token,
        state,
        done,
        next_at,
    )
    if settled is None:
        return False
    if finish.delivered:
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since = NULL"
            " WHERE id = $1 AND failing_since IS NOT NULL",
            finish.endpoint_id,
        )
        return False
    await conn.execute(
        "UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL",
        finish.endpoint_id,
        finish.at,
    )
    if state != "dead":
        return False
    disabled = await conn.fetchval(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'failing',"
        " updated_at = $2 WHERE id = $1 AND enabled AND failing_since <= $3 RETURNING id",
        finish.endpoint_id,
        done,
        done - disable_after_ms,
    )
    return disabled is not None


async def _replay(conn: Conn, endpoint_id: int, replay: Replay, now: int, most: int) -> int:
    args: list[Any] = [now, endpoint_id, most]
    if replay.ids:
        chosen = "id = ANY($4::int8[])"
        args.append(list(replay.ids))
    else:
        chosen = "created_at >= $4 AND created_at < $5"
        args += [replay.since or 0, replay.until if replay.until is not None else now + 1]
    rows = await conn.fetch(
        "INSERT INTO webhook_outbox (endpoint_id, stream, seq, event_type, state, attempts,"
        " next_attempt_at, created_at)"
        " SELECT endpoint_id, stream, seq, event_type, 'pending', 0, $1, $1 FROM ("
        "  SELECT endpoint_id, stream, seq, event_type, min(id) AS first FROM webhook_outbox o"
        f"  WHERE endpoint_id = $2 AND state IN ('delivered', 'dead') AND {chosen}"
        "   AND NOT EXISTS (SELECT 1 FROM webhook_outbox p WHERE p.endpoint_id = o.endpoint_id"
        f"    AND p.stream = o.stream AND p.seq = o.seq AND p.{OPEN})"
        "  GROUP BY endpoint_id, stream, seq, event_type ORDER BY first LIMIT $3) AS r"
        " ORDER BY first RETURNING id",
        *args,
    )
    return len(rows)


async def _owner(conn: Conn, org_id: int, endpoint_id: int) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM webhook_endpoints WHERE id = $1 AND org_id = $2", endpoint_id, org_id
    )
    return found is not None


class PostgresWebhooks:
    """The WebhookStore methods of the PostgreSQL backend."""

    _db: PostgresDatabase

    async def create_webhook(
        self, org_id: int, url: str, events: Sequence[str], secret_sealed: bytes, most: int
    ) -> Endpoint:
        async def run(conn: Conn) -> Endpoint:
            # The organization's row, locked: two creations count one after the other.
            await conn.execute("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE", org_id)
            count = await conn.fetchval(
                "SELECT count(*) FROM webhook_endpoints WHERE org_id = $1", org_id
            )
            if count >= most:
                raise Conflict(f"An organization has at most {most} webhook endpoints")
            now = now_ms()
            row = await conn.fetchrow(
                "INSERT INTO webhook_endpoints (org_id, url, events, secret_sealed, enabled,"
                " created_at, updated_at) VALUES ($1, $2, $3, $4, true, $5, $5)"
                f" RETURNING {ENDPOINT_COLUMNS}",
                org_id,
                url,
                orjson.dumps(list(events)).decode(),
                secret_sealed,
                now,
            )
            return endpoint_of(row)

        return await self._db.write(run)

    async def list_webhooks(self, org_id: int) -> list[Endpoint]:
        async def run(conn: Conn) -> list[Endpoint]:
            rows = await conn.fetch(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1 ORDER BY id",
                org_id,
            )
            return [endpoint_of(row) for row in rows]

        return await self._db.read(run)

    async def get_webhook(self, org_id: int, endpoint_id: int) -> Endpoint | None:
        async def run(conn: Conn) -> Endpoint | None:
            row = await conn.fetchrow(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND org_id = $2",
                endpoint_id,
                org_id,
            )
            return None if row is None else endpoint_of(row)

        return await self._db.read(run)

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

        async def run(conn: Conn) -> Endpoint | None:
            # Names are constants; values are parameters.
            columns = ", ".join(f"{name} = ${n}" for n, name in enumerate(sets, 3))
            row = await conn.fetchrow(
                f"UPDATE webhook_endpoints SET {columns} WHERE id = $1 AND org_id = $2"
                f" RETURNING {ENDPOINT_COLUMNS}",
                endpoint_id,
                org_id,
                *sets.values(),
            )
            return None if row is None else endpoint_of(row)

        return await self._db.write(run)

    async def delete_webhook(self, org_id: int, endpoint_id: int) -> bool:
        async def run(conn: Conn) -> bool:
            found = await conn.fetchval(
                "DELETE FROM webhook_endpoints WHERE id = $1 AND org_id = $2 RETURNING id",
                endpoint_id,
                org_id,
            )
            return found is not None

        return await self._db.write(run)

    async def claim_deliveries(
        self, now: int, lease_ms: int, token: str, limit: int
    ) -> list[Claim]:
        async def run(conn: Conn) -> list[Claim]:
            rows = await conn.fetch(_CLAIM, now + lease_ms, token, now, limit)
            return sorted((_claim_of(row, token) for row in rows), key=lambda c: c.id)

        return await self._db.write(run)

    async def finish_delivery(self, finish: Finish, disable_after_ms: int) -> bool:
        return await self._db.write(lambda conn: _finish(conn, finish, disable_after_ms))

    async def list_deliveries(
        self, org_id: int, endpoint_id: int, before: int | None, limit: int
    ) -> list[Delivery] | None:
        async def run(conn: Conn) -> list[Delivery] | None:
            if not await _owner(conn, org_id, endpoint_id):
                return None
            rows = await conn.fetch(
                f"SELECT {ROW_COLUMNS} FROM webhook_outbox WHERE endpoint_id = $1 AND id < $2"
                " ORDER BY id DESC LIMIT $3",
                endpoint_id,
                before if before is not None else 2**63 - 1,
                limit,
            )
            log: dict[int, list[Attempt]] = {row[0]: [] for row in rows}
            if log:
                for a in await conn.fetch(
                    "SELECT outbox_id, at, status, error, duration_ms FROM webhook_attempts"
                    " WHERE outbox_id = ANY($1::int8[]) ORDER BY outbox_id, id",
                    list(log),
                ):
                    log[a[0]].append(Attempt(a[1], a[2], a[3], a[4]))
            return [delivery_of(row, log[row[0]]) for row in rows]

        return await self._db.read(run)

    async def replay_deliveries(
        self, org_id: int, endpoint_id: int, replay: Replay, now: int, most: int
    ) -> int | None:
        async def run(conn: Conn) -> int | None:
            if not await _owner(conn, org_id, endpoint_id):
                return None
            return await _replay(conn, endpoint_id, replay, now, most)

        return await self._db.write(run)

    async def purge_deliveries(self, before: int) -> int:
        async def run(conn: Conn) -> int:
            rows = await conn.fetch(
                "DELETE FROM webhook_outbox WHERE id IN (SELECT id FROM webhook_outbox"
                " WHERE state IN ('delivered', 'dead') AND created_at < $1 LIMIT $2)"
                " RETURNING id",
                before,
                PURGE_BATCH,
            )
            return len(rows)

        return await self._db.write(run)
