"""Organization settings on PostgreSQL (``base_settings``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from scribeline.domain import OrgSettings
from scribeline.storage.base_settings import (
    decode_kinds,
    encode_kinds,
    org_columns,
    org_settings,
)
from scribeline.storage.postgres_db import PostgresDatabase

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn

__all__ = ["PostgresSettings"]

_ORG = "id, name, redaction, retention_days"


class PostgresSettings:
    """The SettingsStore methods of the PostgreSQL backend."""

    _db: PostgresDatabase

    async def get_org_settings(self, org_id: int) -> OrgSettings | None:
        row = await self._db.read(
            lambda c: c.fetchrow(f"SELECT {_ORG} FROM organizations WHERE id = $1", org_id)
        )
        return None if row is None else org_settings(*row)

    async def update_org_settings(
        self, org_id: int, changes: Mapping[str, Any]
    ) -> OrgSettings | None:
        columns = org_columns(changes)
        if not columns:
            return await self.get_org_settings(org_id)
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=2))

        async def run(conn: Conn) -> OrgSettings | None:
            row = await conn.fetchrow(
                f"UPDATE organizations SET {sets} WHERE id = $1 RETURNING {_ORG}",
                org_id,
                *columns.values(),
            )
            return None if row is None else org_settings(*row)

        return await self._db.write(run)

    async def set_assistant_redaction(
        self, org_id: int, assistant_id: int, kinds: Sequence[str] | None
    ) -> bool:
        value = encode_kinds(kinds, empty_is_null=False)

        async def run(conn: Conn) -> bool:
            found = await conn.fetchval(
                "UPDATE assistants SET redaction = $3 WHERE org_id = $1 AND id = $2 RETURNING id",
                org_id,
                assistant_id,
                value,
            )
            return found is not None

        return await self._db.write(run)

    async def assistant_redactions(self, org_id: int) -> dict[int, tuple[str, ...] | None]:
        rows = await self._db.read(
            lambda c: c.fetch("SELECT id, redaction FROM assistants WHERE org_id = $1", org_id)
        )
        return {row[0]: decode_kinds(row[1]) for row in rows}

    async def redaction_of(self, org_id: int, assistant_id: int) -> tuple[str, ...]:
        row = await self._db.read(
            lambda c: c.fetchrow(
                "SELECT o.redaction, a.redaction FROM organizations o"
                " LEFT JOIN assistants a ON a.org_id = o.id AND a.id = $2 WHERE o.id = $1",
                org_id,
                assistant_id,
            )
        )
        if row is None:
            return ()
        own = decode_kinds(row[1])
        return own if own is not None else decode_kinds(row[0]) or ()
