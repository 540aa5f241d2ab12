"""Meeting bots on PostgreSQL. A bot's status is projected from its events
(``rules.project``) in the transaction that appends them."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from scribeline.domain import Bot, BotStatus
from scribeline.events import now_ms
from scribeline.storage.postgres_db import PostgresDatabase

__all__ = ["PostgresBots"]

_BOT = (
    "id, public_id, org_id, key_id, meeting_url, bot_name, transcription_model, status,"
    " created_at, started_at, ended_at, stop_reason, error"
)

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn


class PostgresBots:
    """The BotStore methods of the PostgreSQL backend."""

    _db: PostgresDatabase

    async def create_bot(
        self,
        org_id: int,
        key_id: int,
        meeting_url: str,
        bot_name: str,
        transcription_model: str,
    ) -> Bot:
        async def run(conn: Conn) -> Bot:
            row = await conn.fetchrow(
                "INSERT INTO bots (public_id, org_id, key_id, meeting_url, bot_name,"
                " transcription_model, status, created_at)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_BOT}",
                str(uuid.uuid4()),
                org_id,
                key_id,
                meeting_url,
                bot_name,
                transcription_model,
                BotStatus.JOINING,
                now_ms(),
            )
            assert row is not None
            return Bot(**row)

        return await self._db.write(run)

    async def get_bot(self, org_id: int | None, public_id: str) -> Bot | None:
        where, args = "public_id = $1", list[Any]([public_id])
        if org_id is not None:
            where, args = f"{where} AND org_id = $2", [public_id, org_id]
        row = await self._db.read(
            lambda c: c.fetchrow(f"SELECT {_BOT} FROM bots WHERE {where}", *args)
        )
        return None if row is None else Bot(**row)

    async def list_bots(self, org_id: int, status: str | None, limit: int) -> list[Bot]:
        where, args = "org_id = $1", list[Any]([org_id])
        if status is not None:
            where, args = f"{where} AND status = $2", [org_id, status]
        args.append(limit)
        rows = await self._db.read(
            lambda c: c.fetch(
                f"SELECT {_BOT} FROM bots WHERE {where} ORDER BY id DESC LIMIT ${len(args)}", *args
            )
        )
        return [Bot(**row) for row in rows]
