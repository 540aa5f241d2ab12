"""Storage backends behind the ``Storage`` interface, chosen by URL."""

from __future__ import annotations

from pathlib import Path

from scribeline.storage.base import Catalog, EventLog, Storage

__all__ = ["Catalog", "EventLog", "Storage", "open_storage"]


async def open_storage(url: str, data_dir: Path) -> Storage:
    """Open and start the backend for ``url`` (empty or ``sqlite:`` → embedded SQLite)."""
    if url in ("", "sqlite:", "sqlite://"):
        from scribeline.storage.sqlite import SqliteStorage

        storage = SqliteStorage(data_dir / "scribeline.db")
        await storage.start()
        return storage
    if url.startswith("sqlite:///"):
        from scribeline.storage.sqlite import SqliteStorage

        storage = SqliteStorage(Path(url.removeprefix("sqlite:///")))
        await storage.start()
        return storage
    raise ValueError(f"Unsupported database URL scheme: {url.split(':', 1)[0]!r}")
