"""Meeting bots on SQLite. A bot's status is projected from its events by
``sqlite_log.project``, in the transaction that appends them."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from scribeline.domain import Bot, BotStatus
from scribeline.events import now_ms
from scribeline.storage.sqlite_db import SqliteDatabase

__all__ = ["SqliteBots"]

_BOT_COLUMNS = (
    "id, public_id, org_id, key_id, meeting_url, bot_name, transcription_model, status,"
    " created_at, started_at, ended_at, stop_reason, error"
)


def _bot(row: tuple[Any, ...]) -> Bot:
    return Bot(*row)


class SqliteBots:
    """The BotStore methods of the SQLite backend."""

    _db: SqliteDatabase

    async def create_bot(
        self,
        org_id: int,
        key_id: int,
        meeting_url: str,
        bot_name: str,
        transcription_model: str,
    ) -> Bot:
        def run(conn: sqlite3.Connection) -> Bot:
            public_id = str(uuid.uuid4())
            created = now_ms()
            cur = conn.execute(
                "INSERT INTO bots (public_id, org_id, key_id, meeting_url, bot_name,"
                " transcription_model, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    public_id,
                    org_id,
                    key_id,
                    meeting_url,
                    bot_name,
                    transcription_model,
                    BotStatus.JOINING,
                    created,
                ),
            )
            row = conn.execute(
                f"SELECT {_BOT_COLUMNS} FROM bots WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
            return _bot(row)

        return await self._db.write(run)

    async def get_bot(self, org_id: int | None, public_id: str) -> Bot | None:
        def run(conn: sqlite3.Connection) -> Bot | None:
            sql, args = "public_id = ?", list[Any]([public_id])
            if org_id is not None:
                sql += " AND org_id = ?"
                args.append(org_id)
            row = conn.execute(f"SELECT {_BOT_COLUMNS} FROM bots WHERE {sql}", args).fetchone()
            return None if row is None else _bot(row)

        return self._db.read_now(run)

    async def list_bots(self, org_id: int, status: str | None, limit: int) -> list[Bot]:
        def run(conn: sqlite3.Connection) -> list[Bot]:
            sql, args = "org_id = ?", list[Any]([org_id])
            if status is not None:
                sql += " AND status = ?"
                args.append(status)
            rows = conn.execute(
                f"SELECT {_BOT_COLUMNS} FROM bots WHERE {sql} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
            return [_bot(r) for r in rows]

        return self._db.read_now(run)
