"""SQLite access from asyncio: one writer thread with group commit, pooled readers.

Writes are functions of a connection, queued to a single writer thread. The
thread takes every write waiting in the queue, runs each inside its own
SAVEPOINT of one transaction (so one failing write does not undo the others),
commits once and only then resolves the callers' futures, in submission
order. One fsync thus covers every append that arrived while the previous
commit was in progress; durability is per commit (``synchronous=FULL``).

Reads never wait for the writer (WAL). Bounded point reads (a key, a call,
a stream's head, one page of events) run on the event loop's own connection:
they take microseconds, less than a hand-off to a thread would cost. Reads
of unbounded size run on a small thread pool, each thread with its own
connection, so they never stall the loop.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["SqliteDatabase", "connect"]

T = TypeVar("T")

#: Most writes taken into one transaction.
MAX_BATCH = 1024


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with our pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = field(default=None)


class SqliteDatabase:
    """Runs functions against one SQLite file from an event loop."""

    def __init__(self, path: Path, readers: int = 2) -> None:
        self._path = path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._loop_conn: sqlite3.Connection | None = None
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-read")
        self._closed = False

    def start(self) -> None:
        """Start the writer thread; call from the event loop that will await results."""
        self._loop = asyncio.get_running_loop()
        self._loop_conn = connect(self._path)
        self._loop_conn.execute("PRAGMA query_only=ON")
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-write", daemon=True)
        self._writer.start()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; return once it is committed."""
        if self._closed or self._loop is None:
            raise RuntimeError("database is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(fn, future))
        return await future

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a bounded, index-backed read on the event loop thread."""
        if self._closed or self._loop_conn is None:
            raise RuntimeError("database is not running")
        return fn(self._loop_conn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read of any size on a reader thread."""
        if self._closed or self._loop is None:
            raise RuntimeError("database is not running")
        return await self._loop.run_in_executor(self._readers, self._run_read, fn)

    async def close(self) -> None:
        """Finish queued writes, then stop the threads."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        if self._loop_conn is not None:
            self._loop_conn.close()

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            self._reader_conns.append(conn)
        return fn(conn)

    def _write_loop(self) -> None:
        conn = connect(self._path)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    batch.append(job)
                self._commit(conn, batch)
                assert self._loop is not None
                self._loop.call_soon_threadsafe(_resolve, batch)
        finally:
            conn.close()

    @staticmethod
    def _commit(conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for job in batch:
                job.error = exc
            return
        single = len(batch) == 1
        for job in batch:
            if single:
                try:
                    job.result = job.fn(conn)
                except BaseException as exc:
                    job.error = exc
                continue
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.fn(conn)
            except BaseException as exc:
                job.error = exc
                conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
        try:
            if single and batch[0].error is not None:
                conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                job.error = exc


def _resolve(batch: list[_Job]) -> None:
    # In submission order: waiters of one stream wake in seq order.
    for job in batch:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
