"""The embedded store: SQLite in WAL mode under the data directory."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from scribeline.domain import (
    ApiKey,
    Assistant,
    KeyKind,
    Organization,
    SpeechSettings,
)
from scribeline.errors import Conflict
from scribeline.events import NewEvent, Position, StoredEvent, now_ms
from scribeline.files import private_dir, private_file
from scribeline.recovery import SegmentHead
from scribeline.storage import migrate
from scribeline.storage.base import Storage
from scribeline.storage.rules import KEY_BATCH, KEY_COLUMNS, key_lookup, key_of, speech_columns
from scribeline.storage.sqlite_alerts import SqliteAlerts
from scribeline.storage.sqlite_bots import SqliteBots
from scribeline.storage.sqlite_calls import SqliteCalls
from scribeline.storage.sqlite_campaigns import SqliteCampaigns
from scribeline.storage.sqlite_db import SqliteDatabase, check_version
from scribeline.storage.sqlite_log import (
    MAX_BOUNDS,
    read_events,
    read_latest_of_type,
    read_segment_heads,
)
from scribeline.storage.sqlite_retention import SqliteRetention
from scribeline.storage.sqlite_sessions import SqliteSessions, insert_key, keys_of_kind
from scribeline.storage.sqlite_settings import SqliteSettings
from scribeline.storage.sqlite_webhooks import SqliteWebhooks

__all__ = ["SqliteStorage"]

#: Events read on the event loop before the rest of a read moves to a thread.
INLINE_PAGE = 256

_ASSISTANT_COLUMNS = "id, org_id, name, is_default, transcription_enabled, speech_engine"
_SPEECH_COLUMNS = (
    "org_id, engine, twilio_auth_token, deepgram_api_key, require_twilio_signature, updated_at"
)


def _assistant(row: sqlite3.Row | tuple[Any, ...]) -> Assistant:
    return Assistant(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5])


def _speech(row: sqlite3.Row | tuple[Any, ...]) -> SpeechSettings:
    return SpeechSettings(row[0], row[1], row[2], row[3], bool(row[4]), row[5])


class SqliteStorage(
    SqliteCalls,
    SqliteCampaigns,
    SqliteBots,
    SqliteSessions,
    SqliteRetention,
    SqliteAlerts,
    SqliteWebhooks,
    SqliteSettings,
    Storage,
):
    """Event log, catalog, calls, campaigns, bots and sessions in one SQLite database file."""

    def __init__(self, path: Path) -> None:
        check_version()  # before anything touches the file
        self._path = path
        self._db = SqliteDatabase(path)

    async def start(self) -> None:
        """Create the data directory, migrate the schema and start the threads."""
        private_dir(self._path.parent)
        private_file(self._path)
        migrate.upgrade(f"sqlite:///{self._path}")
        self._db.start()

    def observe_commits(self, hook: Callable[[int, float], None]) -> None:
        self._db.on_commit = hook

    def observe_outbox(self, hook: Callable[[], None]) -> None:
        self._db.on_outbox = hook

    # -- event log -----------------------------------------------------------

    async def append(self, stream: str, events: Sequence[NewEvent]) -> list[StoredEvent]:
        if not events:
            return []
        # Queued before the first suspension: the order appends were started in.
        return await self._db.append(stream, events)

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

    async def latest_of_type(
        self, bounds: Mapping[str, int], event_type: str
    ) -> dict[str, StoredEvent]:
        pairs = [(stream, upto) for stream, upto in bounds.items() if upto > 0]

        def run(conn: sqlite3.Connection) -> dict[str, StoredEvent]:
            found: dict[str, StoredEvent] = {}
            for start in range(0, len(pairs), MAX_BOUNDS):
                chunk = pairs[start : start + MAX_BOUNDS]
                found.update(read_latest_of_type(conn, chunk, event_type))
            return found

        # An indexed look-up per stream: on the loop for a page of calls.
        return self._db.read_now(run) if len(pairs) <= MAX_BOUNDS else await self._db.read(run)

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
        return await self._db.write(
            lambda conn: insert_key(conn, org_id, prefix, key_hash, scopes, name)
        )

    async def find_api_key(self, key_hash: bytes) -> ApiKey | None:
        def run(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
            return None if row is None else key_of(row)

        return self._db.read_now(run)

    async def get_api_key(self, key_id: int) -> ApiKey | None:
        def run(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
            return None if row is None else key_of(row)

        return self._db.read_now(run)

    async def inactive_keys(self, key_ids: Collection[int], now_ms: int) -> set[int]:
        ids = list(set(key_ids))

        def run(conn: sqlite3.Connection) -> set[int]:
            active: set[int] = set()
            for start in range(0, len(ids), KEY_BATCH):
                chunk = ids[start : start + KEY_BATCH]
                rows = conn.execute(
                    f"SELECT id FROM api_keys WHERE id IN ({','.join('?' * len(chunk))})"
                    " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
                    (*chunk, now_ms),
                )
                active.update(row[0] for row in rows)
            return set(ids) - active

        # Periodic and possibly thousands of ids: on a reader thread, off the loop.
        return await self._db.read(run) if ids else set()

    async def list_api_keys(self, org_id: int) -> list[ApiKey]:
        return self._db.read_now(lambda conn: keys_of_kind(conn, org_id, KeyKind.KEY))

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
            row = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE {where}", args).fetchone()
            return None if row is None else key_of(row)

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
