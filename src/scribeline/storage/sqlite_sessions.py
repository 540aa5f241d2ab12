"""Dashboard sessions and sign-in codes on SQLite, and the ``api_keys`` row that
keys and sessions share.

A code is consumed by one ``DELETE ... RETURNING`` whose condition holds the
expiry, in the same write job (one SAVEPOINT) as the insert of the session it
starts: SQLite runs one writer at a time (across processes too, by its file
lock), so of two consumers of one code exactly one gets a row, and a failed
insert puts the code back.
"""

from __future__ import annotations

import sqlite3

from scribeline.domain import ApiKey, KeyKind, Organization, SignInCode
from scribeline.errors import Conflict, InvalidRequest
from scribeline.events import now_ms
from scribeline.storage.rules import (
    KEY_COLUMNS,
    SESSION_RETENTION_MS,
    key_of,
    scopes_of,
    scopes_text,
)
from scribeline.storage.sqlite_db import SqliteDatabase

__all__ = ["SqliteSessions", "insert_key", "keys_of_kind"]


def insert_key(
    conn: sqlite3.Connection,
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
    user = conn.execute(
        "SELECT id FROM users WHERE org_id = ? ORDER BY id LIMIT 1", (org_id,)
    ).fetchone()
    if user is None:
        raise InvalidRequest(f"Organization {org_id} has no user")
    created = now_ms()
    row = (org_id, user[0], prefix, key_hash, scopes_text(scopes), name, created, kind, expires_at)
    try:
        cur = conn.execute(
            "INSERT INTO api_keys (org_id, user_id, prefix, key_hash, scopes, name, created_at,"
            " kind, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
    except sqlite3.IntegrityError:
        raise Conflict("A key with this hash already exists") from None
    assert cur.lastrowid is not None
    return ApiKey(
        cur.lastrowid, org_id, user[0], prefix, scopes, name, created, None, kind, expires_at
    )


def keys_of_kind(conn: sqlite3.Connection, org_id: int, kind: KeyKind) -> list[ApiKey]:
    """The organization's rows of one kind (its keys, or its sessions), oldest first."""
    rows = conn.execute(
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = ? AND kind = ? ORDER BY id",
        (org_id, kind),
    ).fetchall()
    return [key_of(row) for row in rows]


class SqliteSessions:
    """The sign-in and session methods of the SQLite backend's Catalog."""

    _db: SqliteDatabase

    async def get_org_by_id(self, org_id: int) -> Organization | None:
        def run(conn: sqlite3.Connection) -> Organization | None:
            row = conn.execute(
                "SELECT id, name, created_at FROM organizations WHERE id = ?", (org_id,)
            ).fetchone()
            return None if row is None else Organization(*row)

        return self._db.read_now(run)

    async def add_sign_in_code(
        self, org_id: int, code_hash: bytes, scopes: frozenset[str], expires_at: int
    ) -> SignInCode:
        def run(conn: sqlite3.Connection) -> SignInCode:
            created = now_ms()
            conn.execute("DELETE FROM sign_in_codes WHERE expires_at <= ?", (created,))
            conn.execute(
                "INSERT INTO sign_in_codes (code_hash, org_id, scopes, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (code_hash, org_id, scopes_text(scopes), created, expires_at),
            )
            return SignInCode(org_id, scopes, created, expires_at)

        return await self._db.write(run)

    async def redeem_sign_in_code(
        self, code_hash: bytes, now: int, prefix: str, key_hash: bytes, expires_at: int
    ) -> ApiKey | None:
        def run(conn: sqlite3.Connection) -> ApiKey | None:
            rows = conn.execute(
                "DELETE FROM sign_in_codes WHERE code_hash = ? AND expires_at > ?"
                " RETURNING org_id, scopes",
                (code_hash, now),
            ).fetchall()  # read to the end: the statement is done before the next one
            if not rows:
                return None
            ((org_id, scopes),) = rows
            conn.execute(
                "DELETE FROM api_keys WHERE kind = ? AND expires_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM bots WHERE bots.key_id = api_keys.id)",
                (KeyKind.SESSION, now - SESSION_RETENTION_MS),
            )
            granted, kind = scopes_of(scopes), KeyKind.SESSION
            return insert_key(
                conn, org_id, prefix, key_hash, granted, "dashboard", kind, expires_at
            )

        return await self._db.write(run)

    async def list_sessions(self, org_id: int) -> list[ApiKey]:
        return self._db.read_now(lambda conn: keys_of_kind(conn, org_id, KeyKind.SESSION))

    async def revoke_sessions(self, org_id: int, session_id: int | None, now: int) -> list[ApiKey]:
        # One session whatever its expiry; all of them: those still active.
        which, arg = ("id = ?", session_id) if session_id is not None else ("expires_at > ?", now)

        def run(conn: sqlite3.Connection) -> list[ApiKey]:
            rows = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE org_id = ? AND kind = ?"
                f" AND revoked_at IS NULL AND {which} RETURNING {KEY_COLUMNS}",
                (now, org_id, KeyKind.SESSION, arg),
            ).fetchall()
            return sorted(map(key_of, rows), key=lambda key: key.id)

        return await self._db.write(run)
