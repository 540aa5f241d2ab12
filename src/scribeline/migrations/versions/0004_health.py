"""A row that readiness checks write, so /readyz proves writes complete.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "health",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("checked_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("health")
