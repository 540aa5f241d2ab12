"""Bring a database's schema to the newest migration, quietly."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

__all__ = ["upgrade"]

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


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


def upgrade(sqlalchemy_url: str) -> None:
    """Apply every pending migration (idempotent). Logs only warnings and errors."""
    with _quiet_alembic():
        # Imported here: alembic logs its plugins at INFO when it is first imported.
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_SCRIPTS))
        config.set_main_option("sqlalchemy.url", sqlalchemy_url)
        command.upgrade(config, "head")
