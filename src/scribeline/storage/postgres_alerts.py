"""Alert rules and firings on PostgreSQL (``base_alerts.AlertStore``).

Several nodes may record alerts of one call at once. ``append_alerts`` locks
the stream's head row first (as the append does), so such transactions run
one after the other: each sees the firings the one before it committed (and
the primary key would refuse a second one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import orjson

from scribeline.alerts.drafts import AlertDraft, new_firings, numbered
from scribeline.alerts.rules import AlertRule
from scribeline.errors import InvalidRequest
from scribeline.events import StoredEvent
from scribeline.storage.base_alerts import RULE_COLUMNS, rule_of, rule_values
from scribeline.storage.postgres_db import PostgresDatabase
from scribeline.storage.postgres_log import append_one, lock_streams

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn

__all__ = ["PostgresAlerts"]


class PostgresAlerts:
    """The ``AlertStore`` methods of the PostgreSQL backend."""

    _db: PostgresDatabase

    async def create_alert_rule(self, rule: AlertRule, max_rules: int) -> AlertRule:
        async def run(conn: Conn) -> AlertRule:
            # The organization's row lock makes the count and the insert one step.
            await conn.execute("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE", rule.org_id)
            count = await conn.fetchval(
                "SELECT count(*) FROM alert_rules WHERE org_id = $1", rule.org_id
            )
            if count >= max_rules:
                raise InvalidRequest(f"An organization has at most {max_rules} alert rules")
            row = await conn.fetchrow(
                "INSERT INTO alert_rules (org_id, name, kind, config, speaker, enabled,"
                " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                f" RETURNING {RULE_COLUMNS}",
                *rule_values(rule),
            )
            assert row is not None
            return rule_of(row)

        return await self._db.write(run)

    async def list_alert_rules(self, org_id: int) -> list[AlertRule]:
        rows = await self._db.read(
            lambda c: c.fetch(
                f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = $1 ORDER BY id", org_id
            )
        )
        return [rule_of(row) for row in rows]

    async def get_alert_rule(self, org_id: int, rule_id: int) -> AlertRule | None:
        row = await self._db.read(
            lambda c: c.fetchrow(
                f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = $1 AND id = $2",
                org_id,
                rule_id,
            )
        )
        return None if row is None else rule_of(row)

    async def update_alert_rule(self, rule: AlertRule) -> bool:
        async def run(conn: Conn) -> bool:
            status = await conn.execute(
                "UPDATE alert_rules SET name = $1, config = $2, speaker = $3, enabled = $4,"
                " updated_at = $5 WHERE org_id = $6 AND id = $7",
                rule.name,
                orjson.dumps(rule.config).decode(),
                rule.speaker,
                rule.enabled,
                rule.updated_at,
                rule.org_id,
                rule.id,
            )
            return bool(status != "UPDATE 0")

        return await self._db.write(run)

    async def delete_alert_rule(self, org_id: int, rule_id: int) -> bool:
        async def run(conn: Conn) -> bool:
            status = await conn.execute(
                "DELETE FROM alert_rules WHERE org_id = $1 AND id = $2", org_id, rule_id
            )
            return bool(status != "DELETE 0")

        return await self._db.write(run)

    async def append_alerts(self, stream: str, drafts: Sequence[AlertDraft]) -> list[StoredEvent]:
        async def run(conn: Conn) -> list[StoredEvent]:
            await lock_streams(conn, [stream])
            before = await conn.fetchval(
                "SELECT count(*) FROM alert_firings WHERE stream = $1", stream
            )
            rows = await conn.fetch(
                "SELECT rule_id, segment FROM alert_firings"
                " WHERE stream = $1 AND segment = ANY($2::text[])",
                stream,
                [d.segment for d in drafts],
            )
            fresh = new_firings(drafts, {(r[0], r[1]) for r in rows})
            if not fresh:
                return []
            stored = await append_one(conn, stream, numbered(fresh, before))
            await conn.execute(
                "INSERT INTO alert_firings (rule_id, stream, segment, alert_seq, created_at)"
                " SELECT r, $1, g, a, t"
                " FROM unnest($2::int8[], $3::text[], $4::int8[], $5::int8[]) AS u(r, g, a, t)",
                stream,
                [d.rule_id for d in fresh],
                [d.segment for d in fresh],
                [e.seq for e in stored],
                [d.ts for d in fresh],
            )
            return stored

        return await self._db.write(run)

    async def alert_counts(self, bounds: Mapping[str, int]) -> dict[str, tuple[int, StoredEvent]]:
        pairs = [(stream, upto) for stream, upto in bounds.items() if upto > 0]
        if not pairs:
            return {}
        rows = await self._db.read(
            lambda c: c.fetch(
                "SELECT b.stream, n.count, e.seq, e.type, e.ts, e.closes, e.data, s.epoch"
                " FROM unnest($1::text[], $2::int8[]) AS b(stream, upto)"
                " CROSS JOIN LATERAL (SELECT count(*) AS count, max(alert_seq) AS last"
                "   FROM alert_firings WHERE stream = b.stream AND alert_seq <= b.upto) n"
                " JOIN events e ON e.stream = b.stream AND e.seq = n.last"
                " JOIN streams s ON s.stream = b.stream",
                [stream for stream, _ in pairs],
                [upto for _, upto in pairs],
            )
        )
        return {
            r[0]: (r[1], StoredEvent(r[0], r[2], r[3], r[4], orjson.loads(r[6]), r[5], r[7]))
            for r in rows
        }
