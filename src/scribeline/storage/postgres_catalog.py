"""The catalog on PostgreSQL: organizations, keys, assistants and calls."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import asyncpg

from scribeline.domain import (
    ApiKey,
    Assistant,
    Call,
    CallPage,
    KeyKind,
    Organization,
    SpeechSettings,
)
from scribeline.errors import CallEnded, Conflict, StreamClosed
from scribeline.events import NewEvent, StoredEvent, now_ms
from scribeline.storage.postgres_campaigns import complete_linked_contact, take_contact
from scribeline.storage.postgres_db import PostgresDatabase
from scribeline.storage.postgres_log import append_one
from scribeline.storage.postgres_sessions import insert_key, key_record, keys_of_kind
from scribeline.storage.rules import (
    KEY_BATCH,
    KEY_COLUMNS,
    key_lookup,
    linked_outcome,
    list_cursor,
    speech_columns,
    status_filter,
)

__all__ = ["PostgresCatalog"]

_CALL = (
    "id, org_id, assistant_id, call_sid, status, to_phone_number, customer_phone_number,"
    " call_type, started_at, ended_at, campaign_id, campaign_contact_id"
)

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn
_ASSISTANT = "id, org_id, name, is_default, transcription_enabled, speech_engine"
_SPEECH = (
    "org_id, engine, twilio_auth_token, deepgram_api_key, require_twilio_signature, updated_at"
)


def _assistant(row: asyncpg.Record | None) -> Assistant | None:
    return None if row is None else Assistant(**row)


def _call(row: asyncpg.Record | None) -> Call | None:
    return None if row is None else Call(**row)


class PostgresCatalog:
    """The Catalog methods of the PostgreSQL backend."""

    _db: PostgresDatabase

    async def create_org(self, name: str) -> Organization:
        async def run(conn: Conn) -> Organization:
            created = now_ms()
            try:
                org_id = await conn.fetchval(
                    "INSERT INTO organizations (name, created_at) VALUES ($1, $2) RETURNING id",
                    name,
                    created,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"Organization {name!r} already exists") from None
            await conn.execute(
                "WITH owner AS (INSERT INTO users (org_id, name, created_at)"
                " VALUES ($1, 'owner', $2))"
                " INSERT INTO assistants (org_id, name, is_default, created_at)"
                " VALUES ($1, 'Default assistant', true, $2)",
                org_id,
                created,
            )
            return Organization(org_id, name, created)

        return await self._db.write(run)

    async def get_org(self, name: str) -> Organization | None:
        row = await self._db.read(
            lambda c: c.fetchrow(
                "SELECT id, name, created_at FROM organizations WHERE name = $1", name
            )
        )
        return None if row is None else Organization(**row)

    async def list_orgs(self) -> list[Organization]:
        rows = await self._db.read(
            lambda c: c.fetch("SELECT id, name, created_at FROM organizations ORDER BY id")
        )
        return [Organization(**row) for row in rows]

    async def add_api_key(
        self, org_id: int, prefix: str, key_hash: bytes, scopes: frozenset[str], name: str
    ) -> ApiKey:
        return await self._db.write(
            lambda conn: insert_key(conn, org_id, prefix, key_hash, scopes, name)
        )

    async def find_api_key(self, key_hash: bytes) -> ApiKey | None:
        return key_record(
            await self._db.read(
                lambda c: c.fetchrow(
                    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash
                )
            )
        )

    async def get_api_key(self, key_id: int) -> ApiKey | None:
        return key_record(
            await self._db.read(
                lambda c: c.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id)
            )
        )

    async def inactive_keys(self, key_ids: Collection[int], now_ms: int) -> set[int]:
        ids = list(set(key_ids))

        async def run(conn: Conn) -> set[int]:
            active: set[int] = set()
            for start in range(0, len(ids), KEY_BATCH):
                rows = await conn.fetch(
                    "SELECT id FROM api_keys WHERE id = ANY($1::int8[]) AND revoked_at IS NULL"
                    " AND (expires_at IS NULL OR expires_at > $2)",
                    ids[start : start + KEY_BATCH],
                    now_ms,
                )
                active.update(row[0] for row in rows)
            return set(ids) - active

        return await self._db.read(run) if ids else set()

    async def list_api_keys(self, org_id: int) -> list[ApiKey]:
        return await keys_of_kind(self._db, org_id, KeyKind.KEY)

    async def revoke_api_key(self, org_id: int | None, id_or_prefix: str) -> ApiKey | None:
        column, value = key_lookup(id_or_prefix)
        where, args = f"{column} = $2", list[Any]([now_ms(), value])
        if org_id is not None:
            where, args = f"{where} AND org_id = $3", [*args, org_id]

        async def run(conn: Conn) -> ApiKey | None:
            return key_record(
                await conn.fetchrow(
                    "WITH revoked AS (UPDATE api_keys SET revoked_at = $1"
                    f" WHERE {where} AND revoked_at IS NULL RETURNING {KEY_COLUMNS})"
                    f" SELECT {KEY_COLUMNS} FROM revoked UNION ALL"
                    f" SELECT {KEY_COLUMNS} FROM api_keys WHERE {where} AND revoked_at IS NOT NULL",
                    *args,
                )
            )

        return await self._db.write(run)

    async def get_assistant(self, org_id: int, assistant_id: int | None) -> Assistant | None:
        where = "is_default" if assistant_id is None else "id = $2"
        args: list[Any] = [org_id] if assistant_id is None else [org_id, assistant_id]
        row = await self._db.read(
            lambda c: c.fetchrow(
                f"SELECT {_ASSISTANT} FROM assistants WHERE org_id = $1 AND {where}"
                " ORDER BY id LIMIT 1",
                *args,
            )
        )
        return _assistant(row)

    async def create_assistant(
        self, org_id: int, name: str, transcription_enabled: bool, speech_engine: str = "default"
    ) -> Assistant:
        async def run(conn: Conn) -> Assistant:
            row = await conn.fetchrow(
                "INSERT INTO assistants (org_id, name, is_default, transcription_enabled,"
                " speech_engine, created_at) VALUES ($1, $2, false, $3, $4, $5)"
                f" RETURNING {_ASSISTANT}",
                org_id,
                name,
                transcription_enabled,
                speech_engine,
                now_ms(),
            )
            assistant = _assistant(row)
            assert assistant is not None
            return assistant

        return await self._db.write(run)

    async def list_assistants(self, org_id: int) -> list[Assistant]:
        rows = await self._db.read(
            lambda c: c.fetch(
                f"SELECT {_ASSISTANT} FROM assistants WHERE org_id = $1 ORDER BY id", org_id
            )
        )
        return [Assistant(**row) for row in rows]

    async def update_assistant(
        self,
        org_id: int,
        assistant_id: int,
        transcription_enabled: bool | None = None,
        speech_engine: str | None = None,
    ) -> Assistant | None:
        async def run(conn: Conn) -> Assistant | None:
            return _assistant(
                await conn.fetchrow(
                    "UPDATE assistants SET"
                    " transcription_enabled = coalesce($3, transcription_enabled),"
                    " speech_engine = coalesce($4, speech_engine)"
                    f" WHERE org_id = $1 AND id = $2 RETURNING {_ASSISTANT}",
                    org_id,
                    assistant_id,
                    transcription_enabled,
                    speech_engine,
                )
            )

        return await self._db.write(run)

    async def get_speech_settings(self, org_id: int) -> SpeechSettings | None:
        row = await self._db.read(
            lambda c: c.fetchrow(f"SELECT {_SPEECH} FROM speech_settings WHERE org_id = $1", org_id)
        )
        return None if row is None else SpeechSettings(**row)

    async def update_speech_settings(
        self, org_id: int, changes: Mapping[str, Any]
    ) -> SpeechSettings:
        columns = speech_columns(changes)
        names = ", ".join(("org_id", *columns, "updated_at"))
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 3))
        sets = ", ".join(f"{c} = excluded.{c}" for c in (*columns, "updated_at"))

        async def run(conn: Conn) -> SpeechSettings:
            row = await conn.fetchrow(
                f"INSERT INTO speech_settings ({names}) VALUES ({marks})"
                f" ON CONFLICT (org_id) DO UPDATE SET {sets} RETURNING {_SPEECH}",
                org_id,
                *columns.values(),
                now_ms(),
            )
            assert row is not None  # an upsert returns its row
            return SpeechSettings(**row)

        return await self._db.write(run)

    async def speech_settings_with_twilio_token(self) -> list[SpeechSettings]:
        rows = await self._db.read(
            lambda c: c.fetch(
                f"SELECT {_SPEECH} FROM speech_settings"
                " WHERE twilio_auth_token IS NOT NULL ORDER BY org_id"
            )
        )
        return [SpeechSettings(**row) for row in rows]

    async def create_call(self, call: Call, initial: NewEvent) -> tuple[Call, list[StoredEvent]]:
        async def run(conn: Conn) -> tuple[Call, list[StoredEvent]]:
            campaign_id = None
            campaign_events: list[StoredEvent] = []
            if call.campaign_contact_id is not None:
                campaign_id, campaign_events = await take_contact(conn, call)
            try:
                row = await conn.fetchrow(
                    "INSERT INTO calls (org_id, assistant_id, call_sid, status, to_phone_number,"
                    " customer_phone_number, call_type, started_at, ended_at, campaign_id,"
                    " campaign_contact_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                    f" RETURNING {_CALL}",
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
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"Call {call.call_sid} already exists") from None
            created = _call(row)
            assert created is not None
            first = await append_one(conn, created.stream, [initial])
            return created, first + campaign_events

        return await self._db.write(run)

    async def set_call_status(self, call: Call, event: NewEvent) -> list[StoredEvent]:
        async def run(conn: Conn) -> list[StoredEvent]:
            stored = await append_one(conn, call.stream, [event])
            outcome = linked_outcome(call, event)
            if outcome is not None:
                stored += await complete_linked_contact(conn, call, outcome, event.ts)
            return stored

        try:
            return await self._db.write(run)
        except StreamClosed:
            raise CallEnded(f"Call {call.call_sid} has ended") from None

    async def get_call(self, org_id: int, call_sid: str) -> Call | None:
        return _call(
            await self._db.read(
                lambda c: c.fetchrow(
                    f"SELECT {_CALL} FROM calls WHERE org_id = $1 AND call_sid = $2",
                    org_id,
                    call_sid,
                )
            )
        )

    async def list_calls(
        self,
        org_id: int | None,
        status: str | Collection[str] | None,
        limit: int,
        cursor: str | None,
    ) -> CallPage:
        return (await self._calls_page(org_id, status, limit, cursor, heads=False))[0]

    async def list_calls_at_heads(
        self, org_id: int, status: str | Collection[str] | None, limit: int, cursor: str | None
    ) -> tuple[CallPage, dict[str, int]]:
        return await self._calls_page(org_id, status, limit, cursor, heads=True)

    async def _calls_page(
        self,
        org_id: int | None,
        status: str | Collection[str] | None,
        limit: int,
        cursor: str | None,
        heads: bool,
    ) -> tuple[CallPage, dict[str, int]]:
        before = list_cursor(cursor)
        statuses = status_filter(status)
        # One status stays an equality, whose index scan is already in id order.
        one = statuses[0] if statuses is not None and len(statuses) == 1 else None
        many = statuses if statuses is not None and one is None else None
        # Only the filters given: a plan per shape, each on its index.
        clauses, args = ["true"], list[Any]()
        for clause, value in (
            ("org_id = {}", org_id),
            ("status = {}", one),
            ("status = ANY({}::text[])", many),
            ("id < {}", before),
        ):
            if value is not None:
                args.append(value)
                clauses.append(clause.format(f"${len(args)}"))
        # With the heads, one statement reads rows and heads as of one moment (a
        # call's status and its stream's head move in one transaction).
        head = ", coalesce(s.head, 0)" if heads else ""
        join = " LEFT JOIN streams s ON s.stream = 'call:' || calls.id" if heads else ""
        sql = (
            f"SELECT {_CALL}{head} FROM calls{join} WHERE {' AND '.join(clauses)} ORDER BY id DESC"
        )
        args.append(limit + 1)
        rows = await self._db.read(lambda c: c.fetch(f"{sql} LIMIT ${len(args)}", *args))
        calls: list[Call] = []
        found: dict[str, int] = {}
        for row in rows[:limit]:
            values = tuple(row)
            call = Call(*values[:-1]) if heads else Call(*values)
            calls.append(call)
            if heads:
                found[call.stream] = values[-1]
        more = len(rows) > limit
        return CallPage(calls, str(calls[-1].id) if more and calls else None), found
