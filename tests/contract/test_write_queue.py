"""The writer's queue is bounded on every backend: past the bound a write fails
at once with ``StorageUnavailable`` (retryable, nothing queued), never waits
or queues without limit, and writes are accepted again once the queue drains.

Each backend's writer is held busy by a write that waits for the test, so
that the number of writes waiting for their commit is known exactly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from scribeline.errors import StorageUnavailable
from scribeline.storage.postgres_db import PostgresDatabase
from scribeline.storage.sqlite_db import SqliteDatabase
from tests.contract.storage_backends import STORAGE_BACKENDS

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn

#: The bound under test (small, so that the test is quick).
BOUND = 4
#: Ample for a healthy writer.
WAIT = 10.0


@dataclass
class Writer:
    """One backend's writer, reduced to what this test needs."""

    write: Callable[[], Awaitable[Any]]  # a trivial write
    hold: Callable[[], Awaitable[asyncio.Future[Any]]]  # the writer is busy once it returns
    release: Callable[[], None]


async def _sqlite(path: Path) -> tuple[Writer, Callable[[], Awaitable[None]]]:
    db = SqliteDatabase(path, max_pending=BOUND)
    db.start()
    started, released = threading.Event(), threading.Event()

    def block(conn: object) -> None:
        started.set()
        released.wait(WAIT)

    async def hold() -> asyncio.Future[Any]:
        held = asyncio.ensure_future(db.write(block))
        assert await asyncio.to_thread(started.wait, WAIT)
        return held

    writer = Writer(
        lambda: db.write(lambda c: c.execute("SELECT 1").fetchone()), hold, released.set
    )
    return writer, db.close


async def _postgres(url: str) -> tuple[Writer, Callable[[], Awaitable[None]]]:
    db = PostgresDatabase(url, max_pending=BOUND)
    await db.start()
    started, released = asyncio.Event(), asyncio.Event()

    async def block(conn: Conn) -> None:
        started.set()
        await asyncio.wait_for(released.wait(), WAIT)

    async def hold() -> asyncio.Future[Any]:
        held = asyncio.ensure_future(db.write(block))
        await asyncio.wait_for(started.wait(), WAIT)
        return held

    writer = Writer(lambda: db.write(lambda c: c.fetchval("SELECT 1")), hold, released.set)
    return writer, db.close


@pytest.fixture(params=STORAGE_BACKENDS)
async def writer(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Writer]:
    if request.param == "sqlite":
        made = await _sqlite(tmp_path / "queue.db")
    else:
        made = await _postgres(request.getfixturevalue("postgres").create_database())
    writer, close = made
    try:
        yield writer
    finally:
        writer.release()
        await close()


async def test_writes_past_the_bound_fail_at_once_and_are_accepted_after(writer: Writer) -> None:
    """With the writer busy and the bound reached, further writes raise
    StorageUnavailable at once while the accepted ones still wait; once the
    writer is released, the accepted ones commit and new writes are accepted."""
    held = await writer.hold()  # one write pending
    tasks = [asyncio.ensure_future(writer.write()) for _ in range(BOUND + 1)]
    done, waiting = await asyncio.wait(tasks, timeout=WAIT, return_when=asyncio.FIRST_EXCEPTION)
    assert done == set(tasks[BOUND - 1 :])  # the bound counts the held write
    assert all(isinstance(task.exception(), StorageUnavailable) for task in done)
    assert waiting == set(tasks[: BOUND - 1])
    writer.release()
    await asyncio.wait_for(asyncio.gather(held, *waiting), WAIT)
    await asyncio.wait_for(asyncio.gather(*(writer.write() for _ in range(BOUND))), WAIT)
