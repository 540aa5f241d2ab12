"""Alert rules and the record of which rule fired on which segment.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scribeline.migrations.types import ID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", ID, primary_key=True),
        sa.Column("org_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        # The kind's settings, as JSON (alerts/rules.py KIND_FIELDS).
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("speaker", sa.Text, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        # Alerts name their rule by id: an id is never handed out twice.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alert_rules_org", "alert_rules", ["org_id", "id"])
    op.create_table(
        "alert_firings",
        # No foreign key: a firing stays, like its alert event, when its rule is
        # deleted (rule ids are never reused), until its call is deleted.
        sa.Column("rule_id", ID, primary_key=True),
        sa.Column("stream", sa.Text, primary_key=True),
        # ``id:<segment_id>``, or ``seq:<seq>`` for a final without a segment id.
        sa.Column("segment", sa.Text, primary_key=True),
        # The seq of the alert event it appended (a call's alerts up to a seq).
        sa.Column("alert_seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    # A call's alerts up to a seq (its count), and deleting a call.
    op.create_index("ix_alert_firings_stream", "alert_firings", ["stream", "alert_seq"])


def downgrade() -> None:
    op.drop_index("ix_alert_firings_stream", "alert_firings")
    op.drop_table("alert_firings")
    op.drop_index("ix_alert_rules_org", "alert_rules")
    op.drop_table("alert_rules")
