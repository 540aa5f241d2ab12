"""Schema migrations carry existing data forward (SQLite)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config

from scribeline.storage import migrate


def test_segment_heads_are_backfilled_from_existing_calls(tmp_path: Path) -> None:
    """A database from before segment heads gets them computed from its stored
    transcripts when it is upgraded, so old calls page correctly too."""
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    config = Config()
    config.set_main_option(
        "script_location", str(Path(migrate.__file__).parent.parent / "migrations")
    )
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0004")
    rows = [
        (1, {"segment_id": "a", "is_final": False}),
        (2, {"segment_id": "a", "is_final": True}),
        (3, {"segment_id": "b", "is_final": False}),
        (4, {"segment_id": None, "is_final": True}),
        (5, {"segment_id": "a", "is_final": False}),
    ]
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO events (stream, seq, type, ts, closes, data) VALUES (?, ?, ?, 0, 0, ?)",
            [("call:1", seq, "transcript", orjson.dumps(data)) for seq, data in rows],
        )
        conn.execute("INSERT INTO events VALUES ('call:1', 6, 'call_status', 0, 0, '{}')")
    migrate.upgrade(url)
    with sqlite3.connect(path) as conn:
        heads = conn.execute(
            "SELECT stream, segment_id, last_final, last_partial FROM segments ORDER BY 2"
        ).fetchall()
    assert heads == [("call:1", "a", 2, 5), ("call:1", "b", None, 3)]
