"""Schema migrations carry existing data forward (SQLite) and run once however
many nodes start together (PostgreSQL)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from scribeline.storage import migrate
from tests.services import Postgres


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(Path(migrate.__file__).parent.parent / "migrations")
    )
    config.set_main_option("sqlalchemy.url", migrate.sqlalchemy_url(url))
    return config


def test_segment_heads_are_backfilled_from_existing_calls(tmp_path: Path) -> None:
    """A database from before segment heads gets them computed from its stored
    transcripts when it is upgraded, so old calls page correctly too."""
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    command.upgrade(_config(url), "0004")
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


def test_nodes_starting_together_migrate_postgres_once(postgres: Postgres) -> None:
    """Six processes upgrading an empty PostgreSQL database at once all succeed (an
    advisory lock lets one migrate while the others wait, then find nothing to
    do), leaving the schema at the newest revision; upgrading an up-to-date
    database, by its ``postgres://`` spelling, changes nothing."""
    url = postgres.create_database()
    go = f"{time.time() + 2:.3f}"  # one start time for all, after their imports
    script = (
        "import sys, time; from scribeline.storage import migrate;"
        " time.sleep(max(0.0, float(sys.argv[2]) - time.time())); migrate.upgrade(sys.argv[1])"
    )
    nodes = [
        subprocess.Popen([sys.executable, "-c", script, url, go], stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=60)
        assert node.returncode == 0, err.decode()[-2000:]
    database = url.rsplit("/", 1)[1]
    head = ScriptDirectory.from_config(_config(url)).get_current_head()
    assert postgres.psql("SELECT version_num FROM alembic_version", database) == head
    count = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    tables = postgres.psql(count, database)
    migrate.upgrade(url.replace("postgresql://", "postgres://"))
    assert postgres.psql(count, database) == tables
