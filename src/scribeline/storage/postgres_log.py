"""The event log's SQL on PostgreSQL, run inside a caller's transaction.

Seqs come from each stream's head row (``streams``), locked ``FOR UPDATE``
and advanced in the transaction that inserts the events, never from a
sequence: a rolled-back append leaves no gap, and appends of one stream from
every node are serialized by the row lock (other streams are not). Head rows
are locked in stream order, so two writers never wait on each other in a
cycle.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import orjson

from scribeline.events import NewEvent, Position, StoredEvent
from scribeline.recovery import SegmentHead
from scribeline.storage.rules import StreamState, new_stream, project, stamp

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn as Connection

__all__ = [
    "append_many",
    "append_one",
    "lock_streams",
    "read_events",
    "read_heads",
    "read_segment_heads",
]

#: Rows one query of an unbounded read returns.
READ_PAGE = 1000

_LOCK = (
    "SELECT stream, head, epoch, closed FROM streams"
    " WHERE stream = ANY($1::text[]) ORDER BY stream FOR UPDATE"
)
_CREATE = (
    "INSERT INTO streams (stream, epoch, head, closed)"
    " SELECT s, e, 0, false FROM unnest($1::text[], $2::text[]) AS t(s, e) ORDER BY s"
    " ON CONFLICT (stream) DO NOTHING RETURNING stream, head, epoch, closed"
)
_INSERT = (
    "INSERT INTO events (stream, seq, type, ts, closes, data) SELECT * FROM"
    " unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::bool[], $6::bytea[])"
)
_ADVANCE = (
    "UPDATE streams AS s SET head = u.head, closed = u.closed"
    " FROM unnest($1::text[], $2::int8[], $3::bool[]) AS u(stream, head, closed)"
    " WHERE s.stream = u.stream"
)
_SEGMENTS = (
    "INSERT INTO segments AS g (stream, segment_id, last_final, last_partial) SELECT * FROM"
    " unnest($1::text[], $2::text[], $3::int8[], $4::int8[])"
    " ON CONFLICT (stream, segment_id) DO UPDATE SET"
    " last_final = coalesce(excluded.last_final, g.last_final),"
    " last_partial = coalesce(excluded.last_partial, g.last_partial)"
)


async def lock_streams(conn: Connection, streams: Collection[str]) -> dict[str, StreamState]:
    """Lock the head rows of ``streams`` until the transaction ends, creating the
    missing ones (a stream with no events yet: head 0, a fresh epoch)."""
    names = sorted(set(streams))
    states = {r[0]: StreamState(r[1], r[2], r[3]) for r in await conn.fetch(_LOCK, names)}
    missing = [name for name in names if name not in states]
    if missing:
        epochs = [new_stream().epoch for _ in missing]
        created = await conn.fetch(_CREATE, missing, epochs)
        states |= {r[0]: StreamState(r[1], r[2], r[3]) for r in created}
        # Created meanwhile by another node's transaction, committed now.
        racing = [name for name in missing if name not in states]
        if racing:
            states |= {r[0]: StreamState(r[1], r[2], r[3]) for r in await conn.fetch(_LOCK, racing)}
    return states


async def append_many(
    conn: Connection, appends: Sequence[tuple[str, Sequence[NewEvent]]]
) -> list[list[StoredEvent] | Exception]:
    """Append each ``(stream, events)`` in order, in the caller's transaction.

    Returns, per append, its stored events or the error that refused it
    (``StreamClosed``, or an event that cannot be encoded); a refused append
    writes nothing and does not affect the others. SQL errors propagate.
    """
    states = await lock_streams(conn, [stream for stream, _ in appends])
    outcomes: list[list[StoredEvent] | Exception] = []
    columns: tuple[list[object], ...] = ([], [], [], [], [], [])
    written: dict[str, list[StoredEvent]] = {}
    for stream, events in appends:
        try:
            stored, after = stamp(stream, states[stream], events)
            data = [orjson.dumps(event.data) for event in stored]
        except Exception as exc:
            outcomes.append(exc)
            continue
        states[stream] = after
        outcomes.append(stored)
        written.setdefault(stream, []).extend(stored)
        for event, payload in zip(stored, data, strict=True):
            for column, value in zip(
                columns,
                (stream, event.seq, event.type, event.ts, event.closes, payload),
                strict=True,
            ):
                column.append(value)
    # A stream created above whose every append was refused keeps no head row
    # (as if its creation had rolled back: its head reads Position(0, "")).
    unused = [s for s, state in states.items() if state.head == 0 and s not in written]
    if unused:
        await conn.execute("DELETE FROM streams WHERE stream = ANY($1::text[])", unused)
    if not written:
        return outcomes
    await conn.execute(_INSERT, *columns)
    advanced = [(s, states[s].head, states[s].closed) for s in written]
    await conn.execute(_ADVANCE, *map(list, zip(*advanced, strict=True)))
    await _apply_projections(conn, written)
    return outcomes


async def append_one(
    conn: Connection, stream: str, events: Sequence[NewEvent]
) -> list[StoredEvent]:
    """Append to one stream in the caller's transaction; raise what refuses it."""
    (outcome,) = await append_many(conn, [(stream, events)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def _apply_projections(conn: Connection, written: dict[str, list[StoredEvent]]) -> None:
    segments: list[tuple[str, str, int | None, int | None]] = []
    for stream, events in written.items():
        projection = project(stream, events)
        row = projection.row
        if row is not None:
            # Column names come from rules.project, never from input.
            columns = ", ".join(f"{name} = ${n}" for n, name in enumerate(row.changes, 2))
            await conn.execute(
                f"UPDATE {row.table} SET {columns} WHERE id = $1", row.id, *row.changes.values()
            )
        segments += [(stream, seg, *head) for seg, head in projection.segments.items()]
    if segments:
        await conn.execute(_SEGMENTS, *map(list, zip(*segments, strict=True)))


async def read_events(
    conn: Connection, stream: str, after: int, limit: int | None
) -> list[StoredEvent]:
    """Events with ``seq > after``, oldest first: one query per ``READ_PAGE`` rows."""
    events: list[StoredEvent] = []
    while limit is None or len(events) < limit:
        page = READ_PAGE if limit is None else min(READ_PAGE, limit - len(events))
        rows = await conn.fetch(
            "SELECT e.seq, e.type, e.ts, e.closes, e.data, s.epoch"
            " FROM events e JOIN streams s ON s.stream = e.stream"
            " WHERE e.stream = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
            stream,
            after,
            page,
        )
        events += [
            StoredEvent(stream, r[0], r[1], r[2], orjson.loads(r[4]), r[3], r[5]) for r in rows
        ]
        if len(rows) < page:
            break
        after = events[-1].seq
    return events


async def read_heads(conn: Connection, streams: Collection[str]) -> dict[str, Position]:
    """The head of each of ``streams`` (``Position(0, "")`` for one with no events)."""
    names = list(streams)
    rows = await conn.fetch(
        "SELECT stream, head, epoch FROM streams WHERE stream = ANY($1::text[])", names
    )
    found = {r[0]: Position(r[1], r[2]) for r in rows}
    return {name: found.get(name, Position(0, "")) for name in names}


async def read_segment_heads(
    conn: Connection, stream: str, segments: Collection[str]
) -> dict[str, SegmentHead]:
    rows = await conn.fetch(
        "SELECT segment_id, last_final, last_partial FROM segments"
        " WHERE stream = $1 AND segment_id = ANY($2::text[])",
        stream,
        list(segments),
    )
    return {r[0]: (r[1], r[2]) for r in rows}
