"""Organization settings on SQLite (``base_settings``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from scribeline.domain import OrgSettings
from scribeline.storage.base_settings import (
    decode_kinds,
    encode_kinds,
    org_columns,
    org_settings,
)
from scribeline.storage.sqlite_db import SqliteDatabase

__all__ = ["SqliteSettings"]

_ORG = "SELECT id, name, redaction, retention_days FROM organizations WHERE id = ?"


def _read_org(conn: sqlite3.Connection, org_id: int) -> OrgSettings | None:
    row = conn.execute(_ORG, (org_id,)).fetchone()
    return None if row is None else org_settings(*row)


class SqliteSettings:
    """The SettingsStore methods of the SQLite backend."""

    _db: SqliteDatabase

    async def get_org_settings(self, org_id: int) -> OrgSettings | None:
        return self._db.read_now(lambda conn: _read_org(conn, org_id))

    async def update_org_settings(
        self, org_id: int, changes: Mapping[str, Any]
    ) -> OrgSettings | None:
        columns = org_columns(changes)

        def run(conn: sqlite3.Connection) -> OrgSettings | None:
            if columns:
                sets = ", ".join(f"{c} = ?" for c in columns)
                conn.execute(
                    f"UPDATE organizations SET {sets} WHERE id = ?", (*columns.values(), org_id)
                )
            return _read_org(conn, org_id)

        return await self._db.write(run)

    async def set_assistant_redaction(
        self, org_id: int, assistant_id: int, kinds: Sequence[str] | None
    ) -> bool:
        value = encode_kinds(kinds, empty_is_null=False)

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE assistants SET redaction = ? WHERE org_id = ? AND id = ?",
                (value, org_id, assistant_id),
            )
            return cur.rowcount > 0

        return await self._db.write(run)

    async def assistant_redactions(self, org_id: int) -> dict[int, tuple[str, ...] | None]:
        def run(conn: sqlite3.Connection) -> dict[int, tuple[str, ...] | None]:
            rows = conn.execute(
                "SELECT id, redaction FROM assistants WHERE org_id = ?", (org_id,)
            ).fetchall()
            return {row[0]: decode_kinds(row[1]) for row in rows}

        return self._db.read_now(run)

    async def redaction_of(self, org_id: int, assistant_id: int) -> tuple[str, ...]:
        def run(conn: sqlite3.Connection) -> tuple[str, ...]:
            row = conn.execute(
                "SELECT o.redaction, a.redaction FROM organizations o"
                " LEFT JOIN assistants a ON a.org_id = o.id AND a.id = ? WHERE o.id = ?",
                (assistant_id, org_id),
            ).fetchone()
            if row is None:
                return ()
            own = decode_kinds(row[1])
            return own if own is not None else decode_kinds(row[0]) or ()

        return self._db.read_now(run)
