"""Segment heads: the latest final and partial of every transcript segment.

A projection kept by the event log (``storage.rules.project``) in the
transaction of each append, so that "only the latest result of a segment" is
an indexed look-up per page of history, not a scan of the call.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BACKFILL = """
INSERT INTO segments (stream, segment_id, last_final, last_partial)
SELECT stream, json_extract(CAST(data AS TEXT), '$.segment_id'),
       max(CASE WHEN json_extract(CAST(data AS TEXT), '$.is_final') THEN seq END),
       max(CASE WHEN json_extract(CAST(data AS TEXT), '$.is_final') THEN NULL ELSE seq END)
FROM events
WHERE type = 'transcript' AND json_extract(CAST(data AS TEXT), '$.segment_id') IS NOT NULL
GROUP BY 1, 2
"""


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("stream", sa.Text, primary_key=True),
        sa.Column("segment_id", sa.Text, primary_key=True),
        sa.Column("last_final", sa.BigInteger, nullable=True),
        sa.Column("last_partial", sa.BigInteger, nullable=True),
        sqlite_with_rowid=False,
    )
    # Only SQLite databases predate this revision: a PostgreSQL store is created
    # at this schema or later, so it has no transcripts to backfill.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_BACKFILL)


def downgrade() -> None:
    op.drop_table("segments")
