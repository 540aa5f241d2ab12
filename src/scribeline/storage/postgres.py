"""The shared store: PostgreSQL, through asyncpg, for several nodes at once.

Chosen by ``open_storage("postgresql://...")``. The schema comes from the same
alembic migrations as SQLite's (``storage.migrate``, under an advisory lock);
the decisions come from ``storage.rules``; writes go through one group-commit
writer per node (``postgres_db``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from scribeline.errors import StorageUnavailable
from scribeline.events import NewEvent, Position, StoredEvent, now_ms
from scribeline.recovery import SegmentHead
from scribeline.storage import migrate
from scribeline.storage.base import Storage
from scribeline.storage.postgres_alerts import PostgresAlerts
from scribeline.storage.postgres_bots import PostgresBots
from scribeline.storage.postgres_campaigns import PostgresCampaigns
from scribeline.storage.postgres_catalog import PostgresCatalog
from scribeline.storage.postgres_db import PostgresDatabase
from scribeline.storage.postgres_log import (
    read_events,
    read_heads,
    read_latest_of_type,
    read_segment_heads,
)
from scribeline.storage.postgres_retention import PostgresRetention
from scribeline.storage.postgres_sessions import PostgresSessions
from scribeline.storage.postgres_settings import PostgresSettings
from scribeline.storage.postgres_webhooks import PostgresWebhooks

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn

__all__ = ["PostgresStorage"]


class PostgresStorage(
    PostgresCatalog,
    PostgresCampaigns,
    PostgresBots,
    PostgresSessions,
    PostgresRetention,
    PostgresAlerts,
    PostgresWebhooks,
    PostgresSettings,
    Storage,
):
    """Event log, catalog, campaigns and bots in one PostgreSQL database."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self._url = url
        # asyncpg takes libpq's URL forms; SQLAlchemy's driver suffix is not one.
        self._db = PostgresDatabase(
            url.replace("postgresql+asyncpg://", "postgresql://"), pool_size
        )

    async def start(self) -> None:
        """Migrate the schema (once across nodes) and open the pool."""
        try:
            await asyncio.to_thread(migrate.upgrade, self._url)
        except Exception as exc:
            if _unreachable(exc):
                raise StorageUnavailable(f"PostgreSQL is unreachable: {_reason(exc)}") from exc
            raise
        await self._db.start()

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
        return await self._db.read(lambda c: read_events(c, stream, after, limit))

    async def head(self, stream: str) -> Position:
        return (await self.heads([stream]))[stream]

    async def heads(self, streams: Collection[str]) -> dict[str, Position]:
        if not streams:
            return {}
        return await self._db.read(lambda c: read_heads(c, streams))

    async def latest_of_type(
        self, bounds: Mapping[str, int], event_type: str
    ) -> dict[str, StoredEvent]:
        pairs = [(stream, upto) for stream, upto in bounds.items() if upto > 0]
        if not pairs:
            return {}
        return await self._db.read(lambda c: read_latest_of_type(c, pairs, event_type))

    async def segment_heads(self, stream: str, segments: Collection[str]) -> dict[str, SegmentHead]:
        if not segments:
            return {}
        return await self._db.read(lambda c: read_segment_heads(c, stream, segments))

    async def ping(self) -> None:
        # A real, durable write through the writer: readiness means appends commit.
        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO health (id, checked_at) VALUES (1, $1)"
                " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                now_ms(),
            )

        await self._db.write(run)

    async def close(self) -> None:
        await self._db.close()


def _unreachable(exc: BaseException) -> bool:
    """A migration that failed to connect (psycopg, through SQLAlchemy)."""
    import sqlalchemy.exc

    return isinstance(exc, sqlalchemy.exc.OperationalError | OSError)


def _reason(exc: BaseException) -> str:
    """The driver's first line (it names host and port, never the password)."""
    cause = getattr(exc, "orig", None) or exc
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
