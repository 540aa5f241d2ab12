"""Speech settings: the engine an organization or assistant uses, and the
third-party secrets an organization stores for live audio (sealed, never plain).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scribeline.migrations.types import ID

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "speech_settings",
        sa.Column("org_id", ID, sa.ForeignKey("organizations.id"), primary_key=True),
        sa.Column("engine", sa.Text, nullable=False, server_default="default"),
        # Sealed with the server's secret (scribeline.secrets): recoverable, as an
        # HMAC key and an API key must be, but never stored in the clear.
        sa.Column("twilio_auth_token", sa.LargeBinary, nullable=True),
        sa.Column("deepgram_api_key", sa.LargeBinary, nullable=True),
        sa.Column(
            "require_twilio_signature", sa.Boolean, nullable=False, server_default=sa.false()
        ),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("assistants") as batch:
        batch.add_column(
            sa.Column("speech_engine", sa.Text, nullable=False, server_default="default")
        )


def downgrade() -> None:
    with op.batch_alter_table("assistants") as batch:
        batch.drop_column("speech_engine")
    op.drop_table("speech_settings")
