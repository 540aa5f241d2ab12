"""Campaigns and their contacts; assistants can switch transcription off.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scribeline.migrations.types import ID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assistants") as batch:
        batch.add_column(
            sa.Column("transcription_enabled", sa.Boolean, nullable=False, server_default=sa.true())
        )
    op.create_table(
        "campaigns",
        sa.Column("id", ID, primary_key=True),
        sa.Column("org_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("assistant_id", ID, sa.ForeignKey("assistants.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_campaigns_org", "campaigns", ["org_id", "id"])
    op.create_table(
        "campaign_contacts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("campaign_id", ID, sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("phone_number", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("call_sid", sa.Text, nullable=True),
        sa.Column("duration", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_campaign_contacts_status", "campaign_contacts", ["campaign_id", "status"])
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("campaign_id", ID, nullable=True))
        batch.add_column(sa.Column("campaign_contact_id", ID, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("campaign_contact_id")
        batch.drop_column("campaign_id")
    op.drop_table("campaign_contacts")
    op.drop_table("campaigns")
    with op.batch_alter_table("assistants") as batch:
        batch.drop_column("transcription_enabled")
