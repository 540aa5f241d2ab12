"""Webhook endpoints, their durable outbox and the delivery log.

Outbox rows are written in the transaction of the event they deliver
(``storage.sqlite_webhooks``/``postgres_webhooks``); the body is built from
the stored event when it is sent, so the outbox holds no content.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scribeline.migrations.types import ID

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: Rows a deliverer may claim: waiting, or held by a lease that may have expired.
_OPEN = sa.text("state IN ('pending', 'sending')")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", ID, primary_key=True),
        sa.Column("org_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        # A JSON list of event types.
        sa.Column("events", sa.Text, nullable=False),
        # The signing secret, sealed (scribeline.sealed): it must be recoverable to sign.
        sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        # Since when every attempt failed (NULL after a success).
        sa.Column("failing_since", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_webhook_endpoints_org", "webhook_endpoints", ["org_id"])
    op.create_table(
        "webhook_outbox",
        sa.Column("id", ID, primary_key=True),
        sa.Column(
            "endpoint_id",
            ID,
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        # pending | sending | delivered | dead
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        # The claim: until when it holds, and its fencing token.
        sa.Column("lease_until", sa.BigInteger, nullable=True),
        sa.Column("lease_token", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("delivered_at", sa.BigInteger, nullable=True),
    )
    op.create_index(
        "ix_webhook_outbox_due",
        "webhook_outbox",
        ["next_attempt_at", "id"],
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )
    # Only the oldest open row of an (endpoint, stream) may be claimed: found here.
    op.create_index(
        "ix_webhook_outbox_order",
        "webhook_outbox",
        ["endpoint_id", "stream", "seq", "id"],
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )
    op.create_index("ix_webhook_outbox_endpoint", "webhook_outbox", ["endpoint_id", "id"])
    # A call's rows go with the call (deletion, retention).
    op.create_index("ix_webhook_outbox_stream", "webhook_outbox", ["stream"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", ID, primary_key=True),
        sa.Column(
            "outbox_id", ID, sa.ForeignKey("webhook_outbox.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", sa.BigInteger, nullable=False),
        # The HTTP status (NULL: no response), and why it failed (no body, no secret).
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
    )
    op.create_index("ix_webhook_attempts_outbox", "webhook_attempts", ["outbox_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_attempts_outbox", "webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_outbox_stream", "webhook_outbox")
    op.drop_index("ix_webhook_outbox_endpoint", "webhook_outbox")
    op.drop_index("ix_webhook_outbox_order", "webhook_outbox")
    op.drop_index("ix_webhook_outbox_due", "webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_index("ix_webhook_endpoints_org", "webhook_endpoints")
    op.drop_table("webhook_endpoints")
