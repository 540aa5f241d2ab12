"""Alembic environment: runs migrations on the URL or connection it is given.

On PostgreSQL the upgrade holds a session advisory lock, so that nodes
starting together migrate one at a time: the first applies the revisions,
the others wait, then find the schema at head and do nothing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text

#: ``pg_advisory_lock`` key of schema upgrades (any constant; "scribeline").
MIGRATION_LOCK = 0x736372696265

config = context.config


def _run(conn: Connection) -> None:
    locked = conn.dialect.name == "postgresql"
    if locked:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        conn.commit()
    try:
        context.configure(connection=conn, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if locked:
            conn.rollback()  # a failed revision leaves its transaction aborted
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            conn.commit()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()
