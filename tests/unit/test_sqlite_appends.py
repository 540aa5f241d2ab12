"""The SQLite writer runs a batch of appends as one group in one transaction;
a refused append fails alone, and a group whose SQL fails runs again write by
write. (``tests/contract/test_append_concurrency.py`` covers the seqs under
load on every backend.)"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scribeline.errors import StreamClosed
from scribeline.events import NewEvent
from scribeline.storage.sqlite import SqliteStorage
from scribeline.storage.sqlite_db import SqliteDatabase

#: Long enough for a healthy writer on a loaded machine; a dead one never answers.
WAIT = 10.0


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    store = SqliteStorage(tmp_path / "test.db")
    await store.start()
    yield store
    await store.close()


def _db(storage: SqliteStorage) -> SqliteDatabase:
    return storage._db


async def _hold_writer(db: SqliteDatabase) -> tuple[threading.Event, asyncio.Future[None]]:
    """Keep the writer busy until the event is set: what is queued meanwhile is one batch."""
    started, release = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(WAIT)

    task = asyncio.ensure_future(db.write(block))
    await asyncio.to_thread(started.wait, WAIT)
    return release, task


def _line(n: int, closes: bool = False, ts: int = 1) -> NewEvent:
    return NewEvent("transcript", {"n": n}, closes=closes, ts=ts)


async def test_a_batch_of_appends_commits_once_and_a_refused_one_fails_alone(
    storage: SqliteStorage,
) -> None:
    """Appends to several streams queued together (one to an ended stream, two to
    a new one) are one batch: each gets its seqs in queue order, the refused one
    gets ``StreamClosed`` and writes nothing."""
    await storage.append("ended", [_line(0, closes=True)])
    db = _db(storage)
    release, blocker = await _hold_writer(db)
    batches = db.batches
    plan = ["a", "b", "ended", "a", "new", "new"]
    appends = [asyncio.ensure_future(storage.append(s, [_line(i)])) for i, s in enumerate(plan)]
    release.set()
    await asyncio.wait_for(blocker, WAIT)
    outcomes = await asyncio.wait_for(asyncio.gather(*appends, return_exceptions=True), WAIT)
    assert db.batches == batches + 2  # the blocker's, then the appends' one
    assert isinstance(outcomes[2], StreamClosed)
    seqs = [(o[0].stream, o[0].seq) for o in outcomes if isinstance(o, list)]
    assert seqs == [("a", 1), ("b", 1), ("a", 2), ("new", 1), ("new", 2)]
    assert (await storage.head("ended")).seq == 1
    assert [e.data["n"] for e in await storage.read("a")] == [0, 3]


async def test_a_group_whose_sql_fails_runs_again_write_by_write(
    storage: SqliteStorage,
) -> None:
    """An append the database refuses (a timestamp past a 64-bit column) fails the
    group's SQL: the batch runs again one write at a time, so only that append
    fails and the others keep their queue order, with no gap in seqs."""
    db = _db(storage)
    release, blocker = await _hold_writer(db)
    events = [[_line(1)], [_line(2, ts=2**70)], [_line(3)], [_line(4)]]
    appends = [asyncio.ensure_future(storage.append("s", e)) for e in events]
    release.set()
    await asyncio.wait_for(blocker, WAIT)
    outcomes = await asyncio.wait_for(asyncio.gather(*appends, return_exceptions=True), WAIT)
    assert isinstance(outcomes[1], Exception)
    kept = [o for o in outcomes if isinstance(o, list)]
    assert [o[0].seq for o in kept] == [1, 2, 3]
    assert [e.data["n"] for e in await storage.read("s")] == [1, 3, 4]
