"""Dashboard sessions and sign-in codes on PostgreSQL, and the ``api_keys`` row
that keys and sessions share.

A code is consumed by one ``DELETE ... RETURNING`` whose condition holds the
expiry, in the same transaction as the insert of the session it starts (one
write job), so a failed insert puts the code back. Two nodes that delete one
code at once: the second waits on the row lock of the first and, once that
commits, finds no row (READ COMMITTED re-checks a locked row, and a deleted
one is gone), so exactly one gets it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from scribeline.domain import ApiKey, KeyKind, Organization, SignInCode
from scribeline.errors import Conflict, InvalidRequest
from scribeline.events import now_ms
from scribeline.storage.postgres_db import PostgresDatabase
from scribeline.storage.rules import (
    KEY_COLUMNS,
    SESSION_RETENTION_MS,
    key_of,
    scopes_of,
    scopes_text,
)

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn

__all__ = ["PostgresSessions", "insert_key", "key_record", "keys_of_kind"]


def key_record(row: asyncpg.Record | None) -> ApiKey | None:
    """An ``api_keys`` row read with ``KEY_COLUMNS``, if there is one."""
    return None if row is None else key_of(row)


async def insert_key(
    conn: Conn,
    org_id: int,
    prefix: str,
    key_hash: bytes,
    scopes: frozenset[str],
    name: str,
    kind: KeyKind = KeyKind.KEY,
    expires_at: int | None = None,
) -> ApiKey:
    """Insert a key or session for the organization's owner (``Conflict`` if a
    row already has this hash)."""
    try:
        row = await conn.fetchrow(
            "INSERT INTO api_keys (org_id, user_id, prefix, key_hash, scopes, name, created_at,"
            " kind, expires_at) SELECT $1, id, $2, $3, $4, $5, $6, $7, $8 FROM users"
            f" WHERE org_id = $1 ORDER BY id LIMIT 1 RETURNING {KEY_COLUMNS}",
            org_id,
            prefix,
            key_hash,
            scopes_text(scopes),
            name,
            now_ms(),
            kind,
            expires_at,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("A key with this hash already exists") from None
    key = key_record(row)
    if key is None:
        raise InvalidRequest(f"Organization {org_id} has no user")
    return key


async def keys_of_kind(db: PostgresDatabase, org_id: int, kind: KeyKind) -> list[ApiKey]:
    """The organization's rows of one kind (its keys, or its sessions), oldest first."""
    rows = await db.read(
        lambda c: c.fetch(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND kind = $2 ORDER BY id",
            org_id,
            kind,
        )
    )
    return [key_of(row) for row in rows]


class PostgresSessions:
    """The sign-in and session methods of the PostgreSQL backend's Catalog."""

    _db: PostgresDatabase

    async def get_org_by_id(self, org_id: int) -> Organization | None:
        row = await self._db.read(
            lambda c: c.fetchrow(
                "SELECT id, name, created_at FROM organizations WHERE id = $1", org_id
            )
        )
        return None if row is None else Organization(**row)

    async def add_sign_in_code(
        self, org_id: int, code_hash: bytes, scopes: frozenset[str], expires_at: int
    ) -> SignInCode:
        created = now_ms()

        async def run(conn: Conn) -> SignInCode:
            await conn.execute(
                "WITH purged AS (DELETE FROM sign_in_codes WHERE expires_at <= $4)"
                " INSERT INTO sign_in_codes (code_hash, org_id, scopes, created_at, expires_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                code_hash,
                org_id,
                scopes_text(scopes),
                created,
                expires_at,
            )
            return SignInCode(org_id, scopes, created, expires_at)

        return await self._db.write(run)

    async def redeem_sign_in_code(
        self, code_hash: bytes, now: int, prefix: str, key_hash: bytes, expires_at: int
    ) -> ApiKey | None:
        async def run(conn: Conn) -> ApiKey | None:
            code = await conn.fetchrow(
                "DELETE FROM sign_in_codes WHERE code_hash = $1 AND expires_at > $2"
                " RETURNING org_id, scopes",
                code_hash,
                now,
            )
            if code is None:
                return None
            await conn.execute(
                "DELETE FROM api_keys WHERE kind = $1 AND expires_at < $2"
                " AND NOT EXISTS (SELECT 1 FROM bots WHERE bots.key_id = api_keys.id)",
                KeyKind.SESSION,
                now - SESSION_RETENTION_MS,
            )
            org_id, granted = code["org_id"], scopes_of(code["scopes"])
            kind = KeyKind.SESSION
            return await insert_key(
                conn, org_id, prefix, key_hash, granted, "dashboard", kind, expires_at
            )

        return await self._db.write(run)

    async def list_sessions(self, org_id: int) -> list[ApiKey]:
        return await keys_of_kind(self._db, org_id, KeyKind.SESSION)

    async def revoke_sessions(self, org_id: int, session_id: int | None, now: int) -> list[ApiKey]:
        # One session whatever its expiry; all of them: those still active.
        which, arg = ("id = $4", session_id) if session_id is not None else ("expires_at > $4", now)

        async def run(conn: Conn) -> list[ApiKey]:
            rows = await conn.fetch(
                "UPDATE api_keys SET revoked_at = $1 WHERE org_id = $2 AND kind = $3"
                f" AND revoked_at IS NULL AND {which} RETURNING {KEY_COLUMNS}",
                now,
                org_id,
                KeyKind.SESSION,
                arg,
            )
            return sorted(map(key_of, rows), key=lambda key: key.id)

        return await self._db.write(run)
