"""Bring a database's schema to the newest migration."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["upgrade"]

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


def upgrade(sqlalchemy_url: str) -> None:
    """Apply every pending migration (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url)
    command.upgrade(config, "head")
