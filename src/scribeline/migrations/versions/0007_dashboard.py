"""Dashboard sign-in: sessions are rows of ``api_keys`` (``kind`` 'session', with an
``expires_at``), and one-time sign-in codes live, hashed, in ``sign_in_codes``.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

from scribeline.migrations.types import ID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        # Every existing row is an API key that never expires.
        batch.add_column(sa.Column("kind", sa.Text, nullable=False, server_default="key"))
        batch.add_column(sa.Column("expires_at", sa.BigInteger, nullable=True))
    op.create_table(
        "sign_in_codes",
        # SHA-256 of the code: the code itself is only in the link it was printed in.
        sa.Column("code_hash", sa.LargeBinary, primary_key=True),
        sa.Column("org_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    # Expired codes are purged by time whenever a code is added.
    op.create_index("ix_sign_in_codes_expires", "sign_in_codes", ["expires_at"])
    # Old sessions are purged unless a bot names them: the check (and the foreign
    # key's own, on every delete) finds a key's bots by index, not by a scan.
    op.create_index("ix_bots_key", "bots", ["key_id"])


def downgrade() -> None:
    # Without ``kind`` and ``expires_at`` a session's row would be a key that never
    # expires: end every session first (revoked, not deleted: bots may name them).
    op.execute(
        sa.text(
            "UPDATE api_keys SET revoked_at = :now WHERE kind = 'session' AND revoked_at IS NULL"
        ).bindparams(now=time.time_ns() // 1_000_000)
    )
    op.drop_index("ix_bots_key", "bots")
    op.drop_index("ix_sign_in_codes_expires", "sign_in_codes")
    op.drop_table("sign_in_codes")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("kind")
