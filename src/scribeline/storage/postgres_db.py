"""PostgreSQL access from asyncio: a connection pool, one writer task with group
commit, and one rule for what a lost connection means.

Writes are queued to a single writer task. It takes every write waiting in
the queue, runs them in one transaction and commits once, then resolves the
callers in queue order: one WAL flush covers every write that arrived while
the previous commit was in flight, and nobody waits on purpose (an idle
writer commits a lone write at once). Consecutive appends of a batch run as
one group: one statement locks their heads, and one more writes their
events, heads and segments and reads the transaction's id
(``postgres_log.append_many``), so that a commit of appends takes four round
trips (BEGIN, the two, COMMIT), each of which needs both processes
scheduled. A write that fails fails alone: per-append refusals are decided
before any SQL; if a group's SQL fails anyway, the transaction is rolled
back and the batch runs again with a SAVEPOINT per write. Deadlocks
between nodes run the batch again.

Any failure to reach the server, or a connection lost mid-query, raises
``StorageUnavailable`` to the caller, never a false success. A read or a
batch that fails so *before* its COMMIT was sent is tried once more on a
fresh connection (the server is back, or the error stands). A batch whose
connection breaks once its COMMIT was sent has an unknown outcome: the
writer asks the server what became of the transaction, by its id, read
before the COMMIT (``postgres_outcome``). Committed: the callers get
their results, as if the reply had arrived (so they publish, and a producer
does not store its events twice by retrying). Not committed, a server that
restarted in between (its answer could be another transaction's), or no
answer within a few seconds: ``StorageUnavailable``. The writer waits for that
answer before it takes the next batch, so batches still commit in order.
The pool replaces broken connections by itself.

The writer's queue is bounded: past ``MAX_PENDING`` writes waiting for their
commit (queued or in the batch being committed), a new write fails at once
with ``StorageUnavailable`` (nothing is queued, so a retry is safe) rather
than waiting: a write is queued when it is called or never, which keeps the
ordering rule, and a database that falls behind turns into retryable errors
instead of a backlog that grows without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from scribeline.errors import StorageUnavailable
from scribeline.events import NewEvent, StoredEvent
from scribeline.storage import webhook_outbox
from scribeline.storage.postgres_log import append_many
from scribeline.storage.postgres_outcome import Transaction, committed, transaction_of

__all__ = ["Conn", "PostgresDatabase", "connection_lost"]

T = TypeVar("T")

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A pooled connection, as handed to write and read functions.
    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

log = logging.getLogger(__name__)

#: Most writes taken into one transaction.
MAX_BATCH = 512
#: Times a batch runs again after a deadlock or a serialization failure.
ROLLBACK_RETRIES = 5
#: Most writes waiting for their commit; past it, writes are refused (retryable).
MAX_PENDING = 10_000


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the server could not be reached or the connection
    broke (as opposed to a refused statement)."""
    if isinstance(exc, OSError | TimeoutError | asyncio.TimeoutError):
        return True
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError  # class 08
        | asyncpg.exceptions.OperatorInterventionError  # 57: shutdown, cannot connect now
        | asyncpg.exceptions.InsufficientResourcesError  # 53: too many connections, disk full
        | asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, during a failover
    ):
        return True
    # A query on a connection the server already closed.
    return type(exc) is asyncpg.InterfaceError and "closed" in str(exc)


async def _no_reset(conn: object) -> None:
    """Connections carry no session state (no LISTEN, SET or advisory lock), so
    the pool's default reset query would only cost a round trip per release."""


@dataclass(slots=True, eq=False)
class _Job:
    """A queued write: an append (``stream``, ``events``) or a function."""

    future: asyncio.Future[Any]
    stream: str = ""
    events: Sequence[NewEvent] = ()
    fn: Callable[[Conn], Awaitable[Any]] | None = None
    result: Any = None
    error: BaseException | None = field(default=None)


class _Rerun(Exception):
    """A group's SQL failed: run the batch again, one SAVEPOINT per write."""


class _Failed(Exception):
    """The batch's only write failed: roll back and keep its error."""


class PostgresDatabase:
    """A pool and a writer task for one PostgreSQL database."""

    def __init__(self, dsn: str, pool_size: int = 10, max_pending: int = MAX_PENDING) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        # Bounded by this count rather than the queue's size: the close marker
        # always fits, and writes in the batch being committed count too.
        self._max_pending = max_pending
        self._pending = 0
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        #: Called with each batch's writes and commit seconds (metrics).
        self.on_commit: Callable[[int, float], None] | None = None
        #: Called after a batch that wrote webhook outbox rows.
        self.on_outbox: Callable[[], None] | None = None

    async def start(self) -> None:
        """Open the pool (one connection now, more on demand) and start the writer."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                reset=_no_reset,
                timeout=10,  # connecting
                command_timeout=30,  # a hung server is unavailable, not waited on forever
            )
        except Exception as exc:
            if connection_lost(exc):
                raise StorageUnavailable(f"PostgreSQL is unreachable: {exc}") from exc
            raise
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name="postgres-writer"
        )

    # -- the interface for the store -----------------------------------------

    def append(self, stream: str, events: Sequence[NewEvent]) -> asyncio.Future[list[StoredEvent]]:
        """Queue an append now (not when awaited: appends keep the order in which
        they were started); the future resolves once it is committed."""
        return self._submit(_Job(self._future(), stream, events))

    async def write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in a write transaction; return once it is committed."""
        future: asyncio.Future[T] = self._submit(_Job(self._future(), fn=fn))
        return await future

    async def read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection (autocommit: one snapshot per statement)."""
        assert self._pool is not None, "the database is not started"
        for attempt in (1, 2):
            try:
                async with self._pool.acquire() as conn:
                    return await fn(conn)
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                await self._pool.expire_connections()
                if attempt == 2:
                    raise StorageUnavailable() from exc
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Finish queued writes, then close the pool."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._writer is not None:
            await self._writer
        if self._pool is not None:
            await self._pool.close()

    def _future(self) -> asyncio.Future[Any]:
        if self._closed or self._writer is None:
            raise RuntimeError("database is not running")
        return asyncio.get_running_loop().create_future()

    def _submit(self, job: _Job) -> asyncio.Future[Any]:
        if self._pending >= self._max_pending:
            raise StorageUnavailable("The database is overloaded; retry shortly")
        self._pending += 1
        self._queue.put_nowait(job)
        return job.future

    # -- the writer -----------------------------------------------------------

    async def _write_loop(self) -> None:
        # Nothing here may end the task: a failed write fails its own callers.
        stopping = False
        webhook_outbox.begin()
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            began = time.perf_counter()
            try:
                await self._commit(batch)
            except Exception as exc:  # a bug of ours: say so, and fail only this batch
                log.exception("the database writer failed a batch")
                for job in batch:
                    job.result, job.error = None, exc
            self._pending -= len(batch)
            _resolve(batch)
            if self.on_commit is not None:
                self.on_commit(len(batch), time.perf_counter() - began)
            if webhook_outbox.take() and self.on_outbox is not None:
                self.on_outbox()

    async def _commit(self, batch: list[_Job]) -> None:
        """Commit ``batch``, leaving each write's result or error on it."""
        assert self._pool is not None
        careful, retries, reconnected = False, 0, False
        while True:
            for job in batch:
                job.result, job.error = None, None
            committing, xact = False, None
            try:
                async with self._pool.acquire() as conn:
                    transaction = conn.transaction()
                    await transaction.start()
                    try:
                        # What to ask about should the COMMIT's reply be lost:
                        # read by the appends' statement, else asked here.
                        xact = await self._run(conn, batch, careful)
                        if xact is None:
                            xact = await transaction_of(conn)
                    except _Failed:
                        await transaction.rollback()
                        return
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await transaction.rollback()
                        raise
                    committing = True
                    await transaction.commit()
                return
            except _Rerun:
                careful = True
            except asyncpg.exceptions.TransactionRollbackError:
                retries += 1  # a deadlock with another node's writer
                if retries > ROLLBACK_RETRIES:
                    log.warning("a batch kept deadlocking; its writes are refused as retryable")
                    _fail(batch, StorageUnavailable())
                    return
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                await self._pool.expire_connections()
                if committing:
                    await self._settle(batch, xact)
                    return
                if reconnected:
                    _fail(batch, StorageUnavailable())
                    return
                reconnected = True

    async def _settle(self, batch: list[_Job], xact: Transaction | None) -> None:
        """The COMMIT of ``batch`` was sent but its reply was lost: keep the
        results if it committed, else fail the batch as retryable."""
        assert self._pool is not None
        if xact is None:
            return  # it wrote nothing: whatever became of it, the results stand
        if await committed(self._pool, xact):
            log.info("a COMMIT's reply was lost, but it committed: its writes stand")
            return
        _fail(batch, StorageUnavailable())

    async def _run(self, conn: Conn, batch: list[_Job], careful: bool) -> Transaction | None:
        """Every write of ``batch`` in the open transaction: consecutive appends as
        one group (unless ``careful``), each unit in a SAVEPOINT when there are
        several. A failed unit without a SAVEPOINT rolls the transaction back.

        Returns the transaction if a group of appends read it (its id, once
        assigned, stands for the whole transaction, whatever rolls back to a
        SAVEPOINT later), else None."""
        xact: Transaction | None = None
        units: list[list[_Job]] = []
        for job in batch:
            grouped = not careful and job.fn is None and units and units[-1][0].fn is None
            if grouped:
                units[-1].append(job)
            else:
                units.append([job])
        savepoints = len(units) > 1
        for unit in units:
            try:
                if savepoints:
                    async with conn.transaction():
                        read = await _run_unit(conn, unit)
                else:
                    read = await _run_unit(conn, unit)
                xact = xact or read
            except _Rerun:
                raise
            except Exception as exc:
                if connection_lost(exc) or isinstance(
                    exc, asyncpg.exceptions.TransactionRollbackError
                ):
                    raise
                if len(unit) > 1:
                    raise _Rerun() from exc
                unit[0].error = exc
                if not savepoints:
                    raise _Failed() from exc
        return xact


async def _run_unit(conn: Conn, unit: list[_Job]) -> Transaction | None:
    first = unit[0]
    if first.fn is not None:
        first.result = await first.fn(conn)
        return None
    outcomes, xact = await append_many(conn, [(job.stream, job.events) for job in unit])
    for job, outcome in zip(unit, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            job.error = outcome
        else:
            job.result = outcome
    return xact


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        job.result, job.error = None, exc


def _resolve(batch: list[_Job]) -> None:
    # In queue order: waiters of one stream wake in seq order.
    for job in batch:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
