"""Schema migrations carry existing data forward (SQLite) and run once however
many nodes start together (PostgreSQL)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from scribeline.auth import new_api_key, new_secret
from scribeline.domain import KeyKind
from scribeline.events import now_ms
from scribeline.storage import migrate, open_storage
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


async def test_existing_keys_stay_keys_after_the_dashboard_migration(tmp_path: Path) -> None:
    """Keys stored before sessions existed become keys that never expire: still
    active, still listed, still found by their hash."""
    path = tmp_path / "old.db"
    command.upgrade(_config(f"sqlite:///{path}"), "0006")
    _, prefix, digest = new_api_key()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO organizations (id, name, created_at) VALUES (1, 'acme', 0)")
        conn.execute("INSERT INTO users (id, org_id, name, created_at) VALUES (1, 1, 'owner', 0)")
        conn.execute(
            "INSERT INTO api_keys (org_id, user_id, prefix, key_hash, scopes, name, created_at)"
            " VALUES (1, 1, ?, ?, 'read', 'old', 0)",
            (prefix, digest),
        )
    storage = await open_storage(f"sqlite:///{path}", tmp_path)
    try:
        key = await storage.find_api_key(digest)
        assert key is not None and key.kind == KeyKind.KEY and key.expires_at is None
        assert key.active and await storage.list_api_keys(1) == [key]
    finally:
        await storage.close()


async def test_downgrading_the_dashboard_migration_ends_every_session(
    storage_url: str, tmp_path: Path
) -> None:
    """Below 0007 a session's row would read as a key that never expires, so the
    downgrade revokes every session not yet revoked, keeping the rows (a bot may name
    one) and leaving keys and earlier revocations as they were; upgraded again, the
    old sessions' secrets find revoked keys."""
    storage = await open_storage(storage_url, tmp_path)
    try:
        org = await storage.create_org("acme")
        _, key_prefix, key_digest = new_api_key()
        key = await storage.add_api_key(org.id, key_prefix, key_digest, frozenset({"read"}), "k")
        sessions = []
        for _ in range(3):
            _, _, code = new_secret("scd_")
            now = now_ms()
            await storage.add_sign_in_code(org.id, code, frozenset({"read"}), now + 60_000)
            _, prefix, digest = new_secret("scs_")
            session = await storage.redeem_sign_in_code(code, now, prefix, digest, now + 3_600_000)
            assert session is not None
            sessions.append((session, digest))
        (open_one, open_digest), (named, _), (ended, _) = sessions
        await storage.create_bot(org.id, named.id, "https://meet.example.com/x", "B", "m")
        (revoked,) = await storage.revoke_sessions(org.id, ended.id, now_ms() - 60_000)
    finally:
        await storage.close()

    before = now_ms()
    command.downgrade(_config(storage_url), "0006")
    engine = sa.create_engine(migrate.sqlalchemy_url(storage_url))
    try:
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT id, revoked_at FROM api_keys")).all())
            bots = conn.execute(sa.text("SELECT key_id FROM bots")).scalars().all()
    finally:
        engine.dispose()
    assert rows[key.id] is None and rows[ended.id] == revoked.revoked_at
    assert before <= rows[open_one.id] <= now_ms() and before <= rows[named.id] <= now_ms()
    assert len(rows) == 4 and bots == [named.id]

    migrate.upgrade(storage_url)
    storage = await open_storage(storage_url, tmp_path)
    try:
        old = await storage.find_api_key(open_digest)
        assert old is not None and old.kind == KeyKind.KEY and not old.active
        found = await storage.find_api_key(key_digest)
        assert found is not None and found.active
    finally:
        await storage.close()


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
