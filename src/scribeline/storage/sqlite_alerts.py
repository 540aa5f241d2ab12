"""Alert rules and firings on SQLite (``base_alerts.AlertStore``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

import orjson

from scribeline.alerts.drafts import AlertDraft, new_firings, numbered
from scribeline.alerts.rules import AlertRule
from scribeline.errors import InvalidRequest
from scribeline.events import StoredEvent
from scribeline.storage.base_alerts import RULE_COLUMNS, rule_of, rule_values
from scribeline.storage.sqlite_db import SqliteDatabase
from scribeline.storage.sqlite_log import MAX_BOUNDS, append_events

__all__ = ["SqliteAlerts"]


class SqliteAlerts:
    """The ``AlertStore`` methods of the SQLite backend."""

    _db: SqliteDatabase

    async def create_alert_rule(self, rule: AlertRule, max_rules: int) -> AlertRule:
        def run(conn: sqlite3.Connection) -> AlertRule:
            (count,) = conn.execute(
                "SELECT count(*) FROM alert_rules WHERE org_id = ?", (rule.org_id,)
            ).fetchone()
            if count >= max_rules:
                raise InvalidRequest(f"An organization has at most {max_rules} alert rules")
            row = conn.execute(
                "INSERT INTO alert_rules (org_id, name, kind, config, speaker, enabled,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                f" RETURNING {RULE_COLUMNS}",
                rule_values(rule),
            ).fetchone()
            return rule_of(row)

        return await self._db.write(run)

    async def list_alert_rules(self, org_id: int) -> list[AlertRule]:
        rows = self._db.read_now(
            lambda conn: conn.execute(
                f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = ? ORDER BY id", (org_id,)
            ).fetchall()
        )
        return [rule_of(row) for row in rows]

    async def get_alert_rule(self, org_id: int, rule_id: int) -> AlertRule | None:
        row = self._db.read_now(
            lambda conn: conn.execute(
                f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = ? AND id = ?",
                (org_id, rule_id),
            ).fetchone()
        )
        return None if row is None else rule_of(row)

    async def update_alert_rule(self, rule: AlertRule) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE alert_rules SET name = ?, config = ?, speaker = ?, enabled = ?,"
                " updated_at = ? WHERE org_id = ? AND id = ?",
                (
                    rule.name,
                    orjson.dumps(rule.config).decode(),
                    rule.speaker,
                    rule.enabled,
                    rule.updated_at,
                    rule.org_id,
                    rule.id,
                ),
            )
            return cur.rowcount > 0

        return await self._db.write(run)

    async def delete_alert_rule(self, org_id: int, rule_id: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM alert_rules WHERE org_id = ? AND id = ?", (org_id, rule_id)
            )
            return cur.rowcount > 0

        return await self._db.write(run)

    async def append_alerts(self, stream: str, drafts: Sequence[AlertDraft]) -> list[StoredEvent]:
        def run(conn: sqlite3.Connection) -> list[StoredEvent]:
            # One writer: nothing else records firings between these statements.
            (before,) = conn.execute(
                "SELECT count(*) FROM alert_firings WHERE stream = ?", (stream,)
            ).fetchone()
            marks = ",".join("?" * len(drafts))
            rows = conn.execute(
                "SELECT rule_id, segment FROM alert_firings"
                f" WHERE stream = ? AND segment IN ({marks})",
                (stream, *(d.segment for d in drafts)),
            )
            fresh = new_firings(drafts, {(r[0], r[1]) for r in rows})
            if not fresh:
                return []
            stored = append_events(conn, stream, numbered(fresh, before))
            conn.executemany(
                "INSERT INTO alert_firings (rule_id, stream, segment, alert_seq, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (d.rule_id, stream, d.segment, e.seq, d.ts)
                    for d, e in zip(fresh, stored, strict=True)
                ],
            )
            return stored

        return await self._db.write(run)

    async def alert_counts(self, bounds: Mapping[str, int]) -> dict[str, tuple[int, StoredEvent]]:
        pairs = [(stream, upto) for stream, upto in bounds.items() if upto > 0]

        def run(conn: sqlite3.Connection) -> dict[str, tuple[int, StoredEvent]]:
            found: dict[str, tuple[int, StoredEvent]] = {}
            for start in range(0, len(pairs), MAX_BOUNDS):
                chunk = pairs[start : start + MAX_BOUNDS]
                values = ",".join(["(?, ?)"] * len(chunk))
                rows = conn.execute(
                    f"WITH b(stream, upto) AS (VALUES {values}),"
                    " c AS (SELECT f.stream, count(*) AS n, max(f.alert_seq) AS last"
                    "   FROM b JOIN alert_firings f"
                    "   ON f.stream = b.stream AND f.alert_seq <= b.upto"
                    "   GROUP BY f.stream)"
                    " SELECT c.stream, c.n, e.seq, e.type, e.ts, e.closes, e.data, s.epoch FROM c"
                    " JOIN events e ON e.stream = c.stream AND e.seq = c.last"
                    " JOIN streams s ON s.stream = c.stream",
                    [v for pair in chunk for v in pair],
                )
                for r in rows:
                    event = StoredEvent(
                        r[0], r[2], r[3], r[4], orjson.loads(r[6]), bool(r[5]), r[7]
                    )
                    found[r[0]] = (r[1], event)
            return found

        # An indexed look-up per stream: on the loop for a page of calls.
        return self._db.read_now(run) if len(pairs) <= MAX_BOUNDS else await self._db.read(run)
