"""Meeting bots.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scribeline.migrations.types import ID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bots",
        sa.Column("id", ID, primary_key=True),
        sa.Column("public_id", sa.Text, nullable=False, unique=True),
        sa.Column("org_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("key_id", ID, sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("meeting_url", sa.Text, nullable=False),
        sa.Column("bot_name", sa.Text, nullable=False),
        sa.Column("transcription_model", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.Column("stop_reason", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_bots_org", "bots", ["org_id", "id"])


def downgrade() -> None:
    op.drop_table("bots")
