"""pg_drivers: durable appends per second on PostgreSQL, asyncpg against psycopg 3.

Each driver runs the shape of the store's append path as it was when the
driver was chosen (``storage/postgres_db`` and ``postgres_log``; the store now
merges the insert and the head update into one statement, the ``store`` rows
measure it as it is): one writer task takes every append waiting in a queue,
and in one transaction locks the streams' head rows (``SELECT ... FOR
UPDATE``), inserts the events with one ``unnest`` statement, advances the
heads, commits, and only then resolves the callers. The two drivers run the
same SQL against the same server (a fresh ``tests.services.Postgres``, fsync
on, ``synchronous_commit=on``), on a fresh database each.

Two loads: ``producers`` (N streams, each a producer that awaits every ack
before its next append: a commit per wave of N) and ``pipelined`` (one stream,
W appends in flight, as a producer WebSocket does). The figures are appends
per second and the benchmark process's CPU µs per append (driver and writer
together: on 2 cores that is what limits a node). ``store`` runs the real
``PostgresStorage`` (asyncpg) through the same loads, for reference.

    .venv/bin/python -m bench.pg_drivers            # ~1 minute
    .venv/bin/python -m bench.pg_drivers --seconds 3 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psycopg

from scribeline.events import NewEvent
from scribeline.storage import migrate
from scribeline.storage.postgres import PostgresStorage
from tests.services import Postgres

_LOCK = (
    "SELECT stream, head FROM streams WHERE stream = ANY({0}::text[]) ORDER BY stream FOR UPDATE"
)
_CREATE = (
    "INSERT INTO streams (stream, epoch, head, closed) SELECT s, e, 0, false"
    " FROM unnest({0}::text[]) AS t(s) CROSS JOIN (SELECT {1}::text) AS x(e)"
    " ORDER BY s ON CONFLICT (stream) DO NOTHING"
    " RETURNING stream, head"
)
_INSERT = (
    "INSERT INTO events (stream, seq, type, ts, closes, data) SELECT * FROM"
    " unnest({0}::text[], {1}::int8[], {2}::text[], {3}::int8[], {4}::bool[], {5}::bytea[])"
)
_ADVANCE = (
    "UPDATE streams AS s SET head = u.head FROM unnest({0}::text[], {1}::int8[])"
    " AS u(stream, head) WHERE s.stream = u.stream"
)

Append = tuple[str, bytes, asyncio.Future[int]]


def _sql(template: str, style: str) -> str:
    marks = [f"${n}" if style == "dollar" else "%s" for n in range(1, 7)]
    return template.format(*marks)


def _plan(batch: Sequence[Append], heads: dict[str, int]) -> tuple[list[Any], ...]:
    """Seqs for a batch, in queue order; the INSERT's columns."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    now = time.time_ns() // 1_000_000
    for stream, data, _ in batch:
        heads[stream] += 1
        for column, value in zip(
            columns, (stream, heads[stream], "transcript", now, False, data), strict=True
        ):
            column.append(value)
    return columns


class Writer:
    """The group-commit writer, independent of the driver: ``commit`` is the driver part."""

    def __init__(self, commit: Callable[[list[Append]], Awaitable[None]]) -> None:
        self._commit = commit
        self._queue: asyncio.Queue[Append] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.batches = 0

    def append(self, stream: str, data: bytes) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((stream, data, future))
        return future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 512:
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as exc:  # a broken bench must fail, not hang
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                raise
            self.batches += 1

    def stop(self) -> None:
        self._task.cancel()


async def asyncpg_writer(url: str) -> tuple[Writer, Callable[[], Awaitable[None]]]:
    conn = await asyncpg.connect(url)
    lock, create = _sql(_LOCK, "dollar"), _sql(_CREATE, "dollar")
    insert, advance = _sql(_INSERT, "dollar"), _sql(_ADVANCE, "dollar")

    async def commit(batch: list[Append]) -> None:
        streams = sorted({a[0] for a in batch})
        async with conn.transaction():
            heads = {r[0]: r[1] for r in await conn.fetch(lock, streams)}
            missing = [s for s in streams if s not in heads]
            if missing:
                heads |= {r[0]: r[1] for r in await conn.fetch(create, missing, "e")}
            columns = _plan(batch, heads)
            await conn.execute(insert, *columns)
            await conn.execute(advance, streams, [heads[s] for s in streams])
        for (_, _, future), seq in zip(batch, columns[1], strict=True):
            future.set_result(seq)

    return Writer(commit), conn.close


async def psycopg_writer(url: str) -> tuple[Writer, Callable[[], Awaitable[None]]]:
    conn = await psycopg.AsyncConnection.connect(url, prepare_threshold=0)
    lock, create = _sql(_LOCK, "percent"), _sql(_CREATE, "percent")
    insert, advance = _sql(_INSERT, "percent"), _sql(_ADVANCE, "percent")

    async def commit(batch: list[Append]) -> None:
        streams = sorted({a[0] for a in batch})
        # Pipeline mode: BEGIN and the lock in one round trip (the fetch syncs),
        # then the two writes and the COMMIT in another. asyncpg cannot do this.
        async with conn.pipeline(), conn.transaction():
            cur = await conn.execute(lock, (streams,))
            heads = {r[0]: r[1] for r in await cur.fetchall()}
            missing = [s for s in streams if s not in heads]
            if missing:
                cur = await conn.execute(create, (missing, "e"))
                heads |= {r[0]: r[1] for r in await cur.fetchall()}
            columns = _plan(batch, heads)
            await conn.execute(insert, columns)
            await conn.execute(advance, (streams, [heads[s] for s in streams]))
        for (_, _, future), seq in zip(batch, columns[1], strict=True):
            future.set_result(seq)

    return Writer(commit), conn.close


async def store_writer(url: str) -> tuple[Any, Callable[[], Awaitable[None]]]:
    storage = PostgresStorage(url)
    await storage.start()

    class Adapter:
        batches = 0

        def append(self, stream: str, data: bytes) -> asyncio.Future[Any]:
            event = NewEvent("transcript", orjson.loads(data))
            return asyncio.ensure_future(storage.append(stream, [event]))

        def stop(self) -> None:
            pass

    return Adapter(), storage.close


async def run_load(writer: Any, load: str, seconds: float, width: int) -> dict[str, Any]:
    """Appends for ``seconds``; appends/s, ack latency and CPU µs per append."""
    data = orjson.dumps({"content": "x" * 80, "speaker": "user", "is_final": True})
    done, latencies = 0, []
    deadline = time.monotonic() + seconds
    cpu0, t0 = os.times(), time.monotonic()

    async def producer(stream: str) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            start = time.perf_counter()
            await writer.append(stream, data)
            latencies.append(time.perf_counter() - start)
            done += 1

    async def pipeline(stream: str) -> None:
        nonlocal done
        window: asyncio.Queue[tuple[float, asyncio.Future[Any]] | None] = asyncio.Queue(width)

        async def acks() -> None:
            nonlocal done
            while (sent := await window.get()) is not None:
                await sent[1]
                latencies.append(time.perf_counter() - sent[0])
                done += 1

        reader = asyncio.create_task(acks())
        while time.monotonic() < deadline:
            await window.put((time.perf_counter(), writer.append(stream, data)))
        await window.put(None)
        await reader

    suffix = secrets.token_hex(3)
    if load == "producers":
        await asyncio.gather(*(producer(f"p{n}-{suffix}") for n in range(width)))
    else:
        await pipeline(f"pipe-{suffix}")
    elapsed, cpu1 = time.monotonic() - t0, os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    latencies.sort()
    return {
        "appends": done,
        "appends_per_s": round(done / elapsed),
        "cpu_us_per_append": round(cpu / max(done, 1) * 1e6, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "batches": getattr(writer, "batches", None),
    }


DRIVERS: dict[str, Callable[[str], Awaitable[tuple[Any, Callable[[], Awaitable[None]]]]]] = {
    "asyncpg": asyncpg_writer,
    "psycopg": psycopg_writer,
    "store": store_writer,
}


async def measure(server: Postgres, args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for repeat in range(args.repeat):
        for driver in args.drivers:
            for load, width in (("producers", args.producers), ("pipelined", args.window)):
                url = server.create_database()
                await asyncio.to_thread(migrate.upgrade, url)
                writer, close = await DRIVERS[driver](url)
                try:
                    await run_load(writer, load, 0.5, width)  # warm-up: plans, caches
                    result = await run_load(writer, load, args.seconds, width)
                finally:
                    writer.stop()
                    await close()
                row = {"driver": driver, "load": f"{load} ({width})", "repeat": repeat, **result}
                print(json.dumps(row))
                results.append(row)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--producers", type=int, default=64, help="streams awaiting each ack")
    parser.add_argument("--window", type=int, default=256, help="appends in flight, pipelined")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--drivers", nargs="+", default=list(DRIVERS), choices=list(DRIVERS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    server = Postgres().init().start()
    try:
        results = asyncio.run(measure(server, args))
    finally:
        server.destroy()
    header = ("driver", "load", "appends/s", "cpu µs/append", "p50 ms", "p99 ms")
    print("\n{:8} {:16} {:>10} {:>14} {:>7} {:>7}".format(*header))
    for r in results:
        print(
            f"{r['driver']:8} {r['load']:16} {r['appends_per_s']:>10} "
            f"{r['cpu_us_per_append']:>14} {r['p50_ms']:>7} {r['p99_ms']:>7}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
