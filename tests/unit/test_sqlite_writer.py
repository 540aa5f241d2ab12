"""The SQLite writer thread: a write that fails, fails alone, and the thread survives.

These run a real SQLite file; a "bad" write is one that breaks the shared
transaction itself (what an I/O error or a full disk does when SQLite rolls
the transaction back), which used to escape the writer's savepoint handling
and stop every later write.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from scribeline.storage.sqlite_db import SqliteDatabase

#: Long enough for a healthy writer on a loaded machine; a dead one never answers.
WAIT = 10.0


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "test.db")
    database.start()
    await database.write(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    yield database
    await database.close()


def _insert(n: int) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n

    return run


def _breaks_transaction(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO t (n) VALUES (-1)")
    conn.execute("ROLLBACK")  # what SQLite itself does on SQLITE_FULL or an I/O error
    raise sqlite3.OperationalError("database or disk is full")


def _stored(db: SqliteDatabase) -> list[int]:
    return [n for (n,) in db.read_now(lambda c: c.execute("SELECT n FROM t ORDER BY n").fetchall())]


async def _hold_writer(db: SqliteDatabase) -> tuple[threading.Event, asyncio.Task[None]]:
    """Keep the writer thread busy until the event is set, so that writes queued
    meanwhile are taken as one batch (one transaction)."""
    started, release = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(WAIT)

    task = asyncio.get_running_loop().create_task(db.write(block))
    await asyncio.to_thread(started.wait, WAIT)
    return release, task


async def test_a_write_that_breaks_a_batch_fails_alone(db: SqliteDatabase) -> None:
    """In a batch of writes, the one that ends the shared transaction gets the error;
    every other write of the batch is committed and answered."""
    release, blocker = await _hold_writer(db)
    good = [asyncio.ensure_future(db.write(_insert(n))) for n in range(1, 6)]
    bad = asyncio.ensure_future(db.write(_breaks_transaction))
    more = [asyncio.ensure_future(db.write(_insert(n))) for n in range(6, 9)]
    release.set()
    await asyncio.wait_for(blocker, WAIT)
    results = await asyncio.wait_for(
        asyncio.gather(*good, bad, *more, return_exceptions=True), WAIT
    )
    assert results[:5] == [1, 2, 3, 4, 5] and results[6:] == [6, 7, 8]
    assert isinstance(results[5], sqlite3.Error)
    assert _stored(db) == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_a_lone_write_that_breaks_its_transaction_fails_alone(db: SqliteDatabase) -> None:
    """A single failing write gets its error and the writer goes on writing."""
    with pytest.raises(sqlite3.OperationalError):
        await asyncio.wait_for(db.write(_breaks_transaction), WAIT)
    assert await asyncio.wait_for(db.write(_insert(1)), WAIT) == 1
    assert _stored(db) == [1]


async def test_the_writer_survives_any_error(db: SqliteDatabase) -> None:
    """Errors of every kind fail their own writes; the next ones still commit."""

    def violates_a_constraint(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (n) VALUES (NULL), (1)")  # 1 exists by then
        conn.execute("INSERT INTO t (n) VALUES (1)")

    def raises_base_exception(conn: sqlite3.Connection) -> None:
        raise KeyboardInterrupt

    for fn in (raises_base_exception, _breaks_transaction, violates_a_constraint):
        release, blocker = await _hold_writer(db)
        failing = asyncio.ensure_future(db.write(fn))
        after = asyncio.ensure_future(db.write(_insert(len(_stored(db)) + 1)))
        release.set()
        await asyncio.wait_for(blocker, WAIT)
        done = await asyncio.wait_for(asyncio.gather(failing, after, return_exceptions=True), WAIT)
        assert isinstance(done[0], BaseException) and isinstance(done[1], int)
    assert await asyncio.wait_for(db.write(_insert(100)), WAIT) == 100
    assert _stored(db) == [1, 2, 3, 100]


async def test_a_write_that_commits_the_batch_does_not_repeat_the_writes_before_it(
    db: SqliteDatabase,
) -> None:
    """A write that commits the shared transaction itself makes the writes before it
    durable: they are answered once and stored once, and the rest of the batch runs
    in a new transaction."""

    def commits(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (n) VALUES (2)")
        conn.execute("COMMIT")
        return "committed"

    release, blocker = await _hold_writer(db)
    writes = [
        asyncio.ensure_future(db.write(_insert(1))),
        asyncio.ensure_future(db.write(commits)),
        asyncio.ensure_future(db.write(_insert(3))),
    ]
    release.set()
    await asyncio.wait_for(blocker, WAIT)
    assert await asyncio.wait_for(asyncio.gather(*writes), WAIT) == [1, "committed", 3]
    assert _stored(db) == [1, 2, 3]
