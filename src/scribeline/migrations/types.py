"""Column types the migrations share across SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["ID"]

#: Row ids and the columns that refer to them: SQLite's INTEGER (its rowid, as
#: it always was), PostgreSQL's bigint (BIGSERIAL for a primary key), so that a
#: shared store never runs out of ids and accepts every id the API parses.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
