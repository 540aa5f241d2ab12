"""Storage backends behind the ``Storage`` interface, chosen by URL.

``""``, ``sqlite:`` or ``sqlite://``: the embedded SQLite file under the data
directory; ``sqlite:///path``: that file; ``postgresql://...`` or
``postgres://...`` (or SQLAlchemy's ``postgresql+asyncpg://...``): the shared
PostgreSQL store. Backends are imported only
when chosen, so their drivers stay optional.
"""

from __future__ import annotations

from pathlib import Path

from scribeline.storage.base import Catalog, EventLog, Storage

__all__ = ["Catalog", "EventLog", "Storage", "open_storage", "sqlite_path", "upgrade"]

_POSTGRES = ("postgresql://", "postgres://", "postgresql+asyncpg://")


def sqlite_path(url: str, data_dir: Path) -> Path | None:
    """The SQLite file ``url`` names (None: it is not a SQLite URL)."""
    if url in ("", "sqlite:", "sqlite://"):
        return data_dir / "scribeline.db"
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def _unsupported(url: str) -> ValueError:
    return ValueError(f"Unsupported database URL scheme: {url.split(':', 1)[0]!r}")


async def open_storage(url: str, data_dir: Path) -> Storage:
    """Open and start the backend for ``url`` (see above). Migrates the schema first."""
    path = sqlite_path(url, data_dir)
    if path is not None:
        from scribeline.storage.sqlite import SqliteStorage

        embedded = SqliteStorage(path)
        await embedded.start()
        return embedded
    if url.startswith(_POSTGRES):
        from scribeline.storage.postgres import PostgresStorage

        shared = PostgresStorage(url)
        await shared.start()
        return shared
    raise _unsupported(url)


def upgrade(url: str, data_dir: Path) -> None:
    """Bring the schema of the database ``url`` names to the newest migration
    (``scribeline migrate``; start-up does it too). Idempotent; on PostgreSQL
    it runs once however many nodes call it at the same moment (a lock). Blocks."""
    from scribeline.files import private_dir, private_file
    from scribeline.storage import migrate

    path = sqlite_path(url, data_dir)
    if path is not None:
        private_dir(path.parent)
        private_file(path)
        migrate.upgrade(f"sqlite:///{path}")
    elif url.startswith(_POSTGRES):
        migrate.upgrade(url)
    else:
        raise _unsupported(url)
