"""Bring a database's schema to the newest migration, quietly.

``upgrade(url)`` is what start-up and ``scribeline migrate`` run. On
PostgreSQL it holds an advisory lock (``migrations/env.py``), so many nodes
starting together migrate once; it connects through psycopg (synchronous, as
alembic is), while the store itself uses asyncpg.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["sqlalchemy_url", "upgrade"]

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"

#: Alembic keeps the running migration in module globals: one upgrade per
#: process at a time (processes are kept apart by the database's own lock).
_ONE_AT_A_TIME = threading.Lock()


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Keep alembic's INFO lines ("setup plugin ...", "Context impl SQLiteImpl.",
    "Running upgrade ...") out of whatever logging the caller set up: they are
    noise to someone creating a key. A level somebody chose for the ``alembic``
    logger is left alone."""
    logger = logging.getLogger("alembic")
    if logger.level != logging.NOTSET:
        yield
        return
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL of a database URL: ``postgresql://`` and ``postgres://``
    go through psycopg; ``sqlite:///path`` and explicit drivers stay as given."""
    for scheme in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def upgrade(url: str) -> None:
    """Apply every pending migration to the database at ``url`` (``sqlite:///path``,
    ``postgresql://...`` or ``postgres://...``): idempotent, safe to run from many
    processes at once. Blocks; logs only warnings and errors."""
    with _ONE_AT_A_TIME, _quiet_alembic():
        # Imported here: alembic logs its plugins at INFO when it is first imported.
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_SCRIPTS))
        # A literal "%" (in a password) would be read as interpolation by configparser.
        config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
        command.upgrade(config, "head")
