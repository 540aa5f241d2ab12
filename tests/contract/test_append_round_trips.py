"""A group of appends to existing streams costs two statements on PostgreSQL
(lock the heads; write events, heads and segments and read the transaction's
id), and the id it reads is the one the lost-COMMIT check needs.

Every statement is a round trip in which both the node and the server must be
scheduled; on a loaded machine their number sets a commit's latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from scribeline.events import NewEvent
from scribeline.storage import migrate
from scribeline.storage.postgres_log import append_many, read_events, read_heads
from scribeline.storage.postgres_outcome import transaction_of
from tests.services import Postgres


@pytest.fixture
async def conn(postgres: Postgres) -> AsyncIterator[asyncpg.Connection]:
    url = postgres.create_database()
    await asyncio.to_thread(migrate.upgrade, url)
    connection = await asyncpg.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


def transcript(segment: str, n: int, final: bool) -> NewEvent:
    return NewEvent("transcript", {"segment_id": segment, "is_final": final, "n": n})


async def test_a_group_of_appends_is_two_statements_and_reads_its_transaction(
    conn: asyncpg.Connection,
) -> None:
    """Appends to two existing call streams (with segments) run as exactly two
    statements; the stored seqs, heads and segments are those of separate
    statements, and the transaction read with them is the open one."""
    async with conn.transaction():
        await append_many(
            conn, [("call:1", [transcript("x", 0, False)]), ("call:2", [transcript("y", 0, True)])]
        )
    statements: list[str] = []
    conn.add_query_logger(lambda record: statements.append(record.query))
    async with conn.transaction():
        statements.clear()  # BEGIN
        outcomes, xact = await append_many(
            conn,
            [
                ("call:1", [transcript("x", 1, True), transcript("z", 2, False)]),
                ("call:2", [transcript("y", 3, False)]),
                ("call:1", [NewEvent("note", {"n": 4})]),
            ],
        )
        assert len(statements) == 2, statements
        assert xact is not None and xact == await transaction_of(conn)
    assert [[e.seq for e in o] for o in outcomes if isinstance(o, list)] == [[2, 3], [2], [4]]
    assert [e.data["n"] for e in await read_events(conn, "call:1", 0, None)] == [0, 1, 2, 4]
    heads = await read_heads(conn, ["call:1", "call:2"])
    assert (heads["call:1"].seq, heads["call:2"].seq) == (4, 2)
    rows = await conn.fetch(
        "SELECT stream, segment_id, last_final, last_partial FROM segments ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows] == [
        ("call:1", "x", 2, 1),
        ("call:1", "z", None, 3),
        ("call:2", "y", 1, 2),
    ]
