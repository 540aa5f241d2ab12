"""SQLite access from asyncio: one writer thread with group commit, pooled readers.

Writes are appends or functions of a connection, queued to a single writer
thread. The thread takes every write waiting in the queue and runs them in
one transaction, commits once and only then resolves the callers' futures,
in submission order. One fsync thus covers every append that arrived while
the previous commit was in progress; durability is per commit
(``synchronous=FULL``).

A batch of appends only (what ingest under load queues) runs as one group:
one read of the heads and one statement each for the events, the heads and
the segments (``sqlite_log.append_many``); an append it refuses (an ended
stream) fails alone, decided before any SQL. Any other batch, or a group
whose SQL fails anyway (rolled back as a whole), runs each write inside its
own SAVEPOINT (so one failing write does not undo the others). A write that
fails fails only its own caller, even one that ends the shared transaction
itself (the others run again in a new one); the thread survives every error.

The writer's queue is bounded, as PostgreSQL's (``postgres_db``): past
``MAX_PENDING`` writes waiting for their commit (queued or in the batch being
committed), a new write fails at once with ``StorageUnavailable`` (nothing
is queued, so a retry is safe) rather than waiting, so that a write is
queued when it is called or never (the ordering rule) and a disk that falls
behind turns into retryable errors instead of a backlog without limit.

Reads never wait for the writer (WAL). Bounded point reads (a key, a call,
a stream's head, one page of events) run on the event loop's own connection:
they take microseconds, less than a hand-off to a thread would cost. Reads
of unbounded size run on a small thread pool, each thread with its own
connection, so they never stall the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from scribeline.errors import StorageUnavailable
from scribeline.events import NewEvent, StoredEvent
from scribeline.storage import webhook_outbox
from scribeline.storage.sqlite_log import append_events, append_many

__all__ = ["MIN_SQLITE", "SqliteDatabase", "SqliteTooOld", "check_version", "connect"]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The oldest SQLite the storage works with: ``DELETE ... RETURNING`` (sign-in codes)
#: and ``UPDATE ... RETURNING`` (sessions) came with 3.35 (March 2021).
MIN_SQLITE = (3, 35, 0)

#: Most writes taken into one transaction.
MAX_BATCH = 1024
#: Most writes waiting for their commit; past it, writes are refused (retryable).
MAX_PENDING = 10_000


class SqliteTooOld(RuntimeError):
    """The SQLite library this Python uses predates ``MIN_SQLITE``: the storage
    refuses to open (the message is one line for the user)."""


def check_version(version: tuple[int, int, int] | None = None) -> None:
    """Refuse an SQLite older than ``MIN_SQLITE`` (``version``: this Python's)."""
    found = sqlite3.sqlite_version_info if version is None else version
    if found < MIN_SQLITE:
        raise SqliteTooOld(
            f"SQLite {'.'.join(map(str, found))} is too old: Scribeline needs SQLite"
            f" {'.'.join(map(str, MIN_SQLITE))} or later; run it with a Python whose"
            " sqlite3 module is newer, or use PostgreSQL (SCRIBELINE_DATABASE_URL)"
        )


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
    """A queued write: a function, or (without one) an append of ``events`` to ``stream``."""

    fn: Callable[[sqlite3.Connection], Any] | None
    future: asyncio.Future[Any]
    stream: str = ""
    events: Sequence[NewEvent] = ()
    result: Any = None
    error: Exception | None = field(default=None)

    def run(self, conn: sqlite3.Connection) -> Any:
        if self.fn is not None:
            return self.fn(conn)
        return append_events(conn, self.stream, self.events)


class SqliteDatabase:
    """Runs functions against one SQLite file from an event loop."""

    def __init__(self, path: Path, readers: int = 2, max_pending: int = MAX_PENDING) -> None:
        self._path = path
        # Counted on the event loop's thread only: at submission and at resolution.
        self._max_pending = max_pending
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._loop_conn: sqlite3.Connection | None = None
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-read")
        self._closed = False
        #: Writes committed (or failed) and the batches they came in, for metrics.
        self.writes = 0
        self.batches = 0
        #: Called on the event loop with each batch's writes and commit seconds (metrics).
        self.on_commit: Callable[[int, float], None] | None = None
        #: Called on the event loop after a batch that wrote webhook outbox rows.
        self.on_outbox: Callable[[], None] | None = None

    def start(self) -> None:
        """Start the writer thread; call from the event loop that will await results."""
        self._loop = asyncio.get_running_loop()
        self._loop_conn = connect(self._path)
        self._loop_conn.execute("PRAGMA query_only=ON")
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-write", daemon=True)
        self._writer.start()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; return once it is committed."""
        future: asyncio.Future[T] = self._submit(fn)
        return await future

    def append(self, stream: str, events: Sequence[NewEvent]) -> asyncio.Future[list[StoredEvent]]:
        """Queue an append now (not when awaited: appends keep the order in which
        they were started); the future resolves once it is committed."""
        return self._submit(None, stream, events)

    def _submit(
        self,
        fn: Callable[[sqlite3.Connection], Any] | None,
        stream: str = "",
        events: Sequence[NewEvent] = (),
    ) -> asyncio.Future[Any]:
        if self._closed or self._loop is None:
            raise RuntimeError("database is not running")
        if self._pending >= self._max_pending:
            raise StorageUnavailable("The database is overloaded; retry shortly")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending += 1
        self._queue.put(_Job(fn, future, stream, events))
        return future

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
        log.info("the database writer ran %d writes in %d batches", self.writes, self.batches)
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
        # Nothing here may end the thread: a write that fails fails only its own
        # callers, and a connection that breaks is replaced for the next batch.
        conn: sqlite3.Connection | None = None
        stopping = False
        webhook_outbox.begin()
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
            began = time.perf_counter()
            try:
                if conn is None:
                    conn = connect(self._path)
                _commit(conn, batch)
            except BaseException as exc:
                log.exception("the database writer failed a batch; it opens a new connection")
                for job in batch:
                    job.result, job.error = None, _failure(exc)
                _discard(conn)
                conn = None
            assert self._loop is not None
            outboxed = webhook_outbox.take()
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                self._loop.call_soon_threadsafe(
                    self._resolve, batch, time.perf_counter() - began, outboxed
                )
        _discard(conn)

    def _resolve(self, batch: list[_Job], seconds: float, outboxed: int = 0) -> None:
        """On the event loop's thread: the batch is done; wake its callers."""
        self._pending -= len(batch)
        self.writes += len(batch)
        self.batches += 1
        _resolve(batch)
        if self.on_commit is not None:
            self.on_commit(len(batch), seconds)
        if outboxed and self.on_outbox is not None:
            self.on_outbox()


def _commit(conn: sqlite3.Connection, batch: list[_Job]) -> None:
    """Commit a batch: as few transactions as its writes allow, usually one."""
    if len(batch) > 1 and all(job.fn is None for job in batch) and _appends(conn, batch):
        return
    pending = batch
    while pending:
        pending = _transaction(conn, pending)


def _appends(conn: sqlite3.Connection, batch: list[_Job]) -> bool:
    """Run a batch of appends as one group in one transaction. False if its SQL
    failed (nothing of it is kept): the batch then runs again, write by write."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        _fail(batch, exc)
        return True
    try:
        outcomes = append_many(conn, [(job.stream, job.events) for job in batch])
    except Exception:
        log.debug("a group of appends failed; its writes run again one by one", exc_info=True)
        _rollback(conn)
        return False
    if not conn.in_transaction:  # rolled back by SQLite itself (a full disk, an I/O error)
        return False
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        _fail(batch, exc)
        return True
    for job, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, Exception):
            job.error = outcome
        else:
            job.result = outcome
    return True


def _transaction(conn: sqlite3.Connection, batch: list[_Job]) -> list[_Job]:
    """Run ``batch`` in one transaction, each write in its own SAVEPOINT, one COMMIT;
    return the writes that must run again in a new transaction.

    A write that fails is rolled back to its savepoint and fails alone. A write
    that ends the transaction itself is told apart: if it rolled back (what
    SQLite does on a full disk or an I/O error), it fails and the writes before
    it, whose changes went with it, run again; if it committed, the writes up
    to it are durable and the rest run in a new transaction. Failing to begin
    or to commit is nobody's fault in particular and fails the whole batch.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        _fail(batch, exc)
        return []
    savepoints = len(batch) > 1
    for index, job in enumerate(batch):
        try:
            if savepoints:
                conn.execute("SAVEPOINT job")
            try:
                job.result = job.run(conn)
            except BaseException as exc:
                job.error = _failure(exc)
            if not conn.in_transaction:  # the write ended the transaction itself
                if job.error is None:
                    return batch[index + 1 :]
                _reset(batch[:index])
                return batch[:index] + batch[index + 1 :]
            if job.error is not None:
                conn.execute("ROLLBACK TO job" if savepoints else "ROLLBACK")
            if savepoints:
                conn.execute("RELEASE job")
        except sqlite3.Error as exc:  # the savepoint machinery itself failed
            job.result, job.error = None, exc
            _rollback(conn)
            _reset(batch[:index])
            return batch[:index] + batch[index + 1 :]
    if conn.in_transaction:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            _fail(batch, exc)
    return []


def _reset(jobs: list[_Job]) -> None:
    """These writes were rolled back with the transaction: they run again."""
    for job in jobs:
        job.result, job.error = None, None


def _fail(jobs: list[_Job], exc: Exception) -> None:
    for job in jobs:
        if job.error is None:
            job.result, job.error = None, exc


def _failure(exc: BaseException) -> Exception:
    """What a caller is told: an interrupt of the writer thread is not the
    caller's interrupt (a KeyboardInterrupt in a future would stop its loop)."""
    if isinstance(exc, Exception):
        return exc
    return RuntimeError(f"the write was interrupted ({type(exc).__name__})")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.warning("rolling back a failed transaction failed", exc_info=True)


def _discard(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _resolve(batch: list[_Job]) -> None:
    # In submission order: waiters of one stream wake in seq order.
    for job in batch:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
