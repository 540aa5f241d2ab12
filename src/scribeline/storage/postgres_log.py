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

from scribeline.events import NewEvent, Position, StoredEvent, now_ms
from scribeline.recovery import SegmentHead
from scribeline.storage.postgres_outcome import TRANSACTION_COLUMNS, Transaction, transaction_from
from scribeline.storage.rules import StreamState, new_stream, project, stamp_each
from scribeline.storage.webhook_outbox import note, outbox_rows

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn as Connection

__all__ = [
    "append_many",
    "append_one",
    "lock_streams",
    "read_events",
    "read_heads",
    "read_latest_of_type",
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
# The events, the heads and the segments in one statement (one round trip),
# which also reads the transaction's id for the lost-COMMIT check
# (``postgres_outcome``). Its sub-statements run in no set order, which is
# fine: they touch different tables and read none of them (``outbox_in``, the
# webhook outbox, reads the stream's own row, updated before). The id is read
# with ``pg_current_xact_id()``, which assigns it if the inserts have not yet.
_WRITE = f"""
WITH events_in AS (
  INSERT INTO events (stream, seq, type, ts, closes, data) SELECT * FROM
  unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::bool[], $6::bytea[])
), heads AS (
  UPDATE streams AS s SET head = u.head, closed = u.closed
  FROM unnest($7::text[], $8::int8[], $9::bool[]) AS u(stream, head, closed)
  WHERE s.stream = u.stream
), segments_in AS (
  INSERT INTO segments AS g (stream, segment_id, last_final, last_partial) SELECT * FROM
  unnest($10::text[], $11::text[], $12::int8[], $13::int8[])
  ON CONFLICT (stream, segment_id) DO UPDATE SET
  last_final = coalesce(excluded.last_final, g.last_final),
  last_partial = coalesce(excluded.last_partial, g.last_partial)
), outbox_in AS (
  INSERT INTO webhook_outbox (endpoint_id, stream, seq, event_type, state, attempts,
    next_attempt_at, created_at)
  SELECT e.id, u.stream, u.seq, u.type, 'pending', 0, $19, $19
  FROM unnest($14::text[], $15::int8[], $16::text[], $17::text[], $18::int8[])
    WITH ORDINALITY AS u(stream, seq, type, kind, key, n)
  JOIN webhook_endpoints e ON e.enabled AND e.events::jsonb ? u.type AND e.org_id = CASE u.kind
    WHEN 'call' THEN (SELECT org_id FROM calls WHERE id = u.key)
    WHEN 'bot' THEN (SELECT org_id FROM bots WHERE id = u.key)
    ELSE (SELECT org_id FROM campaigns WHERE id = u.key) END
  ORDER BY u.n, e.id
  RETURNING 1
)
SELECT pg_current_xact_id()::text, {TRANSACTION_COLUMNS}, (SELECT count(*) FROM outbox_in)
"""


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
) -> tuple[list[list[StoredEvent] | Exception], Transaction | None]:
    """Append each ``(stream, events)`` in order, in the caller's transaction.

    Returns, per append, its stored events or the error that refused it
    (``StreamClosed``, or an event that cannot be encoded); a refused append
    writes nothing and does not affect the others. Also returns the open
    transaction (None if nothing was written), for the lost-COMMIT check.
    SQL errors propagate.
    """
    states = await lock_streams(conn, [stream for stream, _ in appends])
    outcomes, written = stamp_each(appends, states)
    columns: tuple[list[object], ...] = ([], [], [], [], [], [])
    for stream, kept in written.items():
        for event, payload in kept:
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
        return outcomes, None
    heads = [list(written), [states[s].head for s in written], [states[s].closed for s in written]]
    segments: list[list[object]] = [[], [], [], []]
    for stream, kept in written.items():
        projection = project(stream, [event for event, _ in kept])
        row = projection.row
        if row is not None:
            # Column names come from rules.project, never from input.
            names = ", ".join(f"{name} = ${n}" for n, name in enumerate(row.changes, 2))
            await conn.execute(
                f"UPDATE {row.table} SET {names} WHERE id = $1", row.id, *row.changes.values()
            )
        for segment, (last_final, last_partial) in projection.segments.items():
            for column, value in zip(
                segments, (stream, segment, last_final, last_partial), strict=True
            ):
                column.append(value)
    outbox: list[list[object]] = [[], [], [], [], []]
    for fanned in outbox_rows(written):
        for column, value in zip(outbox, fanned, strict=True):
            column.append(value)
    written_row = await conn.fetchrow(_WRITE, *columns, *heads, *segments, *outbox, now_ms())
    assert written_row is not None
    note(written_row[-1])
    return outcomes, transaction_from(written_row)


async def append_one(
    conn: Connection, stream: str, events: Sequence[NewEvent]
) -> list[StoredEvent]:
    """Append to one stream in the caller's transaction; raise what refuses it."""
    (outcome,), _ = await append_many(conn, [(stream, events)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


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


async def read_latest_of_type(
    conn: Connection, bounds: Collection[tuple[str, int]], event_type: str
) -> dict[str, StoredEvent]:
    """Each stream's newest ``event_type`` event at or below its bound: one
    backward scan of the primary key per stream, in one statement."""
    rows = await conn.fetch(
        "SELECT b.stream, e.seq, e.type, e.ts, e.closes, e.data, s.epoch"
        " FROM unnest($1::text[], $2::int8[]) AS b(stream, upto)"
        " CROSS JOIN LATERAL (SELECT seq, type, ts, closes, data FROM events"
        "   WHERE stream = b.stream AND seq <= b.upto AND type = $3"
        "   ORDER BY seq DESC LIMIT 1) e"
        " JOIN streams s ON s.stream = b.stream",
        [stream for stream, _ in bounds],
        [upto for _, upto in bounds],
        event_type,
    )
    return {r[0]: StoredEvent(r[0], r[1], r[2], r[3], orjson.loads(r[5]), r[4], r[6]) for r in rows}


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
