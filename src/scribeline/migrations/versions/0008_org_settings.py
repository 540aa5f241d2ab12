"""Organization settings: PII redaction (organization and assistant) and retention.

``organizations.redaction`` and ``assistants.redaction`` hold a JSON list of
entity kinds (``scribeline.redaction.KINDS``). On an organization NULL or
``[]`` is off; on an assistant NULL inherits the organization's and ``[]`` is
off. ``organizations.retention_days`` NULL keeps calls forever. Existing rows
get NULL: nothing changes for them.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("redaction", sa.Text, nullable=True))
        batch.add_column(sa.Column("retention_days", sa.Integer, nullable=True))
    with op.batch_alter_table("assistants") as batch:
        batch.add_column(sa.Column("redaction", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assistants") as batch:
        batch.drop_column("redaction")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("retention_days")
        batch.drop_column("redaction")
