"""The embedded store: SQLite in WAL mode under the data directory."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from scribeline.domain import ApiKey, Assistant, Call, CallPage, Organization, SpeechSettings
from scribeline.errors import CallEnded, Conflict, InvalidRequest, StreamClosed
from scribeline.events import NewEvent, Position, StoredEvent, now_ms
from scribeline.files import private_dir, private_file
from scribeline.recovery import SegmentHead
from scribeline.storage import migrate
from scribeline.storage.base import Storage
from scribeline.storage.rules import key_lookup, linked_outcome, list_cursor, speech_columns
from scribeline.storage.sqlite_bots import SqliteBots
from scribeline.storage.sqlite_campaigns import (
    SqliteCampaigns,
    complete_linked_contact,
    take_contact,
)
from scribeline.storage.sqlite_db import SqliteDatabase
from scribeline.storage.sqlite_log import append_events, read_events, read_segment_heads

__all__ = ["SqliteStorage"]

#: Events read on the event loop before the rest of a read moves to a thread.
INLINE_PAGE = 256

_KEY_COLUMNS = "id, org_id, user_id, prefix, scopes, name, created_at, revoked_at"
_CALL_COLUMNS = (
    "id, org_id, assistant_id, call_sid, status, to_phone_number, customer_phone_number,"
    " call_type, started_at, ended_at, campaign_id, campaign_contact_id"
)
_ASSISTANT_COLUMNS = "id, org_id, name, is_default, transcription_enabled, speech_engine"
_SPEECH_COLUMNS = (
    "org_id, engine, twilio_auth_token, deepgram_api_key, require_twilio_signature, updated_at"
)


def _key(row: sqlite3.Row | tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        id=row[0],
        org_id=row[1],
        user_id=row[2],
        prefix=row[3],
        scopes=frozenset(row[4].split(",")) if row[4] else frozenset(),
        name=row[5],
        created_at=row[6],
        revoked_at=row[7],
    )


def _call(row: sqlite3.Row | tuple[Any, ...]) -> Call:
    return Call(*row)


def _assistant(row: sqlite3.Row | tuple[Any, ...]) -> Assistant:
    return Assistant(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5])


def _speech(row: sqlite3.Row | tuple[Any, ...]) -> SpeechSettings:
    return SpeechSettings(row[0], row[1], row[2], row[3], bool(row[4]), row[5])


class SqliteStorage(SqliteCampaigns, SqliteBots, Storage):
    """Event log, catalog, campaigns and bots in one SQLite database file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db = SqliteDatabase(path)

    async def start(self) -> None:
        """Create the data directory, migrate the schema and start the threads."""
        private_dir(self._path.parent)
        private_file(self._path)
        migrate.upgrade(f"sqlite:///{self._path}")
        self._db.start()

    # -- event log -----------------------------------------------------------

    async def append(self, stream: str, events: Sequence[NewEvent]) -> list[StoredEvent]:
        if not events:
            return []
        return await self._db.write(lambda conn: append_events(conn, stream, events))

    async def read(
        self, stream: str, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        page = INLINE_PAGE if limit is None else min(limit, INLINE_PAGE)
        events = self._db.read_now(lambda conn: read_events(conn, stream, after, page))
        if len(events) < page or (limit is not None and limit <= page):
            return events
        rest = None if limit is None else limit - page
        last = events[-1].seq
        events += await self._db.read(lambda conn: read_events(conn, stream, last, rest))
        return events

    async def head(self, stream: str) -> Position:
        def run(conn: sqlite3.Connection) -> Position:
            row = conn.execute(
                "SELECT head, epoch FROM streams WHERE stream = ?", (stream,)
            ).fetchone()
            return Position(0, "") if row is None else Position(row[0], row[1])

        return self._db.read_now(run)

    async def heads(self, streams: Collection[str]) -> dict[str, Position]:
        names = list(streams)

        def run(conn: sqlite3.Connection) -> dict[str, Position]:
            found: dict[str, Position] = {}
            # In chunks: SQLite caps the number of parameters of one statement.
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                rows = conn.execute(
                    "SELECT stream, head, epoch FROM streams"
                    f" WHERE stream IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                found.update((stream, Position(head, epoch)) for stream, head, epoch in rows)
            return {name: found.get(name, Position(0, "")) for name in names}

        # A node's every live stream can be thousands: off the loop then.
        return self._db.read_now(run) if len(names) <= 500 else await self._db.read(run)

    async def segment_heads(self, stream: str, segments: Collection[str]) -> dict[str, SegmentHead]:
        if not segments:
            return {}
        return self._db.read_now(lambda conn: read_segment_heads(conn, stream, segments))

    async def ping(self) -> None:
        # A real, durable write through the writer thread: readiness means that
        # appends complete, not only that the file can be read.
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO health (id, checked_at) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                (now_ms(),),
            )

        await self._db.write(run)

    async def close(self) -> None:
        await self._db.close()

    # -- catalog -------------------------------------------------------------

    async def create_org(self, name: str) -> Organization:
        def run(conn: sqlite3.Connection) -> Organization:
            created = now_ms()
            try:
                cur = conn.execute(
                    "INSERT INTO organizations (name, created_at) VALUES (?, ?)", (name, created)
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"Organization {name!r} already exists") from None
            org_id = cur.lastrowid
            assert org_id is not None
            conn.execute(
                "INSERT INTO users (org_id, name, created_at) VALUES (?, 'owner', ?)",
                (org_id, created),
            )
            conn.execute(
                "INSERT INTO assistants (org_id, name, is_default, created_at)"
                " VALUES (?, 'Default assistant', 1, ?)",
                (org_id, created),
            )
            return Organization(org_id, name, created)

        return await self._db.write(run)

    async def get_org(self, name: str) -> Organization | None:
        def run(conn: sqlite3.Connection) -> Organization | None:
            row = conn.execute(
                "SELECT id, name, created_at FROM organizations WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else Organization(*row)

        return self._db.read_now(run)

    async def list_orgs(self) -> list[Organization]:
        def run(conn: sqlite3.Connection) -> list[Organization]:
            rows = conn.execute("SELECT id, name, created_at FROM organizations ORDER BY id")
            return [Organization(*row) for row in rows.fetchall()]

        return self._db.read_now(run)

    async def add_api_key(
        self, org_id: int, prefix: str, key_hash: bytes, scopes: frozenset[str], name: str
    ) -> ApiKey:
        def run(conn: sqlite3.Connection) -> ApiKey:
            user = conn.execute(
                "SELECT id FROM users WHERE org_id = ? ORDER BY id LIMIT 1", (org_id,)
            ).fetchone()
            if user is None:
                raise InvalidRequest(f"Organization {org_id} has no user")
            created = now_ms()
            cur = conn.execute(
                "INSERT INTO api_keys (org_id, user_id, prefix, key_hash, scopes, name, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (org_id, user[0], prefix, key_hash, ",".join(sorted(scopes)), name, created),
            )
            assert cur.lastrowid is not None
            return ApiKey(cur.lastrowid, org_id, user[0], prefix, scopes, name, created, None)

        return await self._db.write(run)

    async def find_api_key(self, key_hash: bytes) -> ApiKey | None:
        def run(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
            return None if row is None else _key(row)

        return self._db.read_now(run)

    async def get_api_key(self, key_id: int) -> ApiKey | None:
        def run(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
            return None if row is None else _key(row)

        return self._db.read_now(run)

    async def list_api_keys(self, org_id: int) -> list[ApiKey]:
        def run(conn: sqlite3.Connection) -> list[ApiKey]:
            rows = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE org_id = ? ORDER BY id", (org_id,)
            ).fetchall()
            return [_key(r) for r in rows]

        return self._db.read_now(run)

    async def revoke_api_key(self, org_id: int | None, id_or_prefix: str) -> ApiKey | None:
        def run(conn: sqlite3.Connection) -> ApiKey | None:
            column, value = key_lookup(id_or_prefix)
            where = f"{column} = ?"
            args: list[Any] = [value]
            if org_id is not None:
                where += " AND org_id = ?"
                args.append(org_id)
            conn.execute(
                f"UPDATE api_keys SET revoked_at = ? WHERE {where} AND revoked_at IS NULL",
                (now_ms(), *args),
            )
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE {where}", args
            ).fetchone()
            return None if row is None else _key(row)

        return await self._db.write(run)

    async def get_assistant(self, org_id: int, assistant_id: int | None) -> Assistant | None:
        def run(conn: sqlite3.Connection) -> Assistant | None:
            sql, args = "org_id = ? AND is_default = 1", [org_id]
            if assistant_id is not None:
                sql, args = "org_id = ? AND id = ?", [org_id, assistant_id]
            row = conn.execute(
                f"SELECT {_ASSISTANT_COLUMNS} FROM assistants WHERE {sql} ORDER BY id LIMIT 1",
                args,
            ).fetchone()
            return None if row is None else _assistant(row)

        return self._db.read_now(run)

    async def create_assistant(
        self, org_id: int, name: str, transcription_enabled: bool, speech_engine: str = "default"
    ) -> Assistant:
        def run(conn: sqlite3.Connection) -> Assistant:
            cur = conn.execute(
                "INSERT INTO assistants (org_id, name, is_default, transcription_enabled,"
                " speech_engine, created_at) VALUES (?, ?, 0, ?, ?, ?)",
                (org_id, name, transcription_enabled, speech_engine, now_ms()),
            )
            assert cur.lastrowid is not None
            return Assistant(
                cur.lastrowid, org_id, name, False, transcription_enabled, speech_engine
            )

        return await self._db.write(run)

    async def list_assistants(self, org_id: int) -> list[Assistant]:
        def run(conn: sqlite3.Connection) -> list[Assistant]:
            rows = conn.execute(
                f"SELECT {_ASSISTANT_COLUMNS} FROM assistants WHERE org_id = ? ORDER BY id",
                (org_id,),
            ).fetchall()
            return [_assistant(r) for r in rows]

        return self._db.read_now(run)

    async def update_assistant(
        self,
        org_id: int,
        assistant_id: int,
        transcription_enabled: bool | None = None,
        speech_engine: str | None = None,
    ) -> Assistant | None:
        def run(conn: sqlite3.Connection) -> Assistant | None:
            conn.execute(
                "UPDATE assistants SET"
                " transcription_enabled = coalesce(?, transcription_enabled),"
                " speech_engine = coalesce(?, speech_engine)"
                " WHERE org_id = ? AND id = ?",
                (transcription_enabled, speech_engine, org_id, assistant_id),
            )
            row = conn.execute(
                f"SELECT {_ASSISTANT_COLUMNS} FROM assistants WHERE org_id = ? AND id = ?",
                (org_id, assistant_id),
            ).fetchone()
            return None if row is None else _assistant(row)

        return await self._db.write(run)

    async def get_speech_settings(self, org_id: int) -> SpeechSettings | None:
        def run(conn: sqlite3.Connection) -> SpeechSettings | None:
            row = conn.execute(
                f"SELECT {_SPEECH_COLUMNS} FROM speech_settings WHERE org_id = ?", (org_id,)
            ).fetchone()
            return None if row is None else _speech(row)

        return self._db.read_now(run)

    async def update_speech_settings(
        self, org_id: int, changes: Mapping[str, Any]
    ) -> SpeechSettings:
        columns = speech_columns(changes)

        def run(conn: sqlite3.Connection) -> SpeechSettings:
            names = ", ".join(("org_id", *columns, "updated_at"))
            marks = ", ".join("?" for _ in range(len(columns) + 2))
            sets = ", ".join(f"{c} = excluded.{c}" for c in (*columns, "updated_at"))
            conn.execute(
                f"INSERT INTO speech_settings ({names}) VALUES ({marks})"
                f" ON CONFLICT (org_id) DO UPDATE SET {sets}",
                (org_id, *columns.values(), now_ms()),
            )
            row = conn.execute(
                f"SELECT {_SPEECH_COLUMNS} FROM speech_settings WHERE org_id = ?", (org_id,)
            ).fetchone()
            return _speech(row)

        return await self._db.write(run)

    async def speech_settings_with_twilio_token(self) -> list[SpeechSettings]:
        def run(conn: sqlite3.Connection) -> list[SpeechSettings]:
            rows = conn.execute(
                f"SELECT {_SPEECH_COLUMNS} FROM speech_settings"
                " WHERE twilio_auth_token IS NOT NULL ORDER BY org_id"
            ).fetchall()
            return [_speech(r) for r in rows]

        return await self._db.read(run)

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
        self, org_id: int | None, status: str | None, limit: int, cursor: str | None
    ) -> CallPage:
        before = list_cursor(cursor)

        def run(conn: sqlite3.Connection) -> CallPage:
            clauses: list[str] = ["1 = 1"]
            args: list[Any] = []
            if org_id is not None:
                clauses.append("org_id = ?")
                args.append(org_id)
            if status is not None:
                clauses.append("status = ?")
                args.append(status)
            if before is not None:
                clauses.append("id < ?")
                args.append(before)
            rows = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE {' AND '.join(clauses)}"
                " ORDER BY id DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
            calls = [_call(r) for r in rows[:limit]]
            more = len(rows) > limit
            return CallPage(calls, str(calls[-1].id) if more and calls else None)

        return self._db.read_now(run)
