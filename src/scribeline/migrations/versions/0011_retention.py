"""Indexes and state for retention sweeps and call deletion.

The sweeper finds an organization's calls and bots that ended before a
cut-off by ``(org_id, ended_at)``. A deleted call's or bot's stream keeps its
head row, closed, as a tombstone (``storage.rules.CALL_TABLES``), so its id
must never name another call: PostgreSQL's sequences never reuse one, but
SQLite reuses the largest rowid once its row is deleted unless the table is
AUTOINCREMENT, so both tables are rebuilt so on SQLite.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TABLES = ("calls", "bots")


def _autoincrement(on: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": on}
        ):
            pass


def upgrade() -> None:
    _autoincrement(True)
    op.create_index("ix_calls_org_ended", "calls", ["org_id", "ended_at"])
    op.create_index("ix_bots_org_ended", "bots", ["org_id", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_bots_org_ended", "bots")
    op.drop_index("ix_calls_org_ended", "calls")
    _autoincrement(False)
