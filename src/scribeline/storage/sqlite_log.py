"""The event log's SQL, run inside a caller's transaction (SQLite)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

import orjson

from scribeline.events import NewEvent, StoredEvent, now_ms
from scribeline.storage.rules import Projection, StreamState, new_stream, project, stamp_each
from scribeline.storage.webhook_outbox import SQLITE_ENQUEUE, note, outbox_rows

__all__ = [
    "MAX_BOUNDS",
    "append_events",
    "append_many",
    "read_events",
    "read_latest_of_type",
    "read_segment_heads",
]

#: Bounds per ``read_latest_of_type`` statement.
MAX_BOUNDS = 250


def append_events(
    conn: sqlite3.Connection, stream: str, events: Sequence[NewEvent]
) -> list[StoredEvent]:
    """Append inside the caller's transaction (storage's one way to assign seqs);
    raise what refuses it (``StreamClosed``)."""
    (outcome,) = append_many(conn, [(stream, events)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def append_many(
    conn: sqlite3.Connection, appends: Sequence[tuple[str, Sequence[NewEvent]]]
) -> list[list[StoredEvent] | Exception]:
    """Append each ``(stream, events)`` in order, inside the caller's transaction:
    one read of the heads, one statement each for the events, the heads and the
    segments, however many appends.

    Returns, per append, its stored events or the error that refused it
    (``StreamClosed``, or an event that cannot be encoded); a refused append
    writes nothing and does not affect the others. SQL errors propagate.
    """
    names = list(dict.fromkeys(stream for stream, _ in appends))
    states: dict[str, StreamState] = {}
    for start in range(0, len(names), MAX_BOUNDS):  # SQLite caps a statement's parameters
        chunk = names[start : start + MAX_BOUNDS]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT stream, head, epoch, closed FROM streams WHERE stream IN ({marks})", chunk
        )
        states.update((r[0], StreamState(r[1], r[2], bool(r[3]))) for r in rows)
    created = {name: new_stream() for name in names if name not in states}
    states |= created
    outcomes, written = stamp_each(appends, states)
    if not written:
        return outcomes
    rows_in = [
        (stream, e.seq, e.type, e.ts, e.closes, data)
        for stream, kept in written.items()
        for e, data in kept
    ]
    # A stream created here gets its head row only if an append to it was kept.
    new_heads = [
        (s, created[s].epoch, states[s].head, states[s].closed) for s in written if s in created
    ]
    if new_heads:
        conn.executemany(
            "INSERT INTO streams (stream, epoch, head, closed) VALUES (?, ?, ?, ?)", new_heads
        )
    conn.executemany(
        "INSERT INTO events (stream, seq, type, ts, closes, data) VALUES (?, ?, ?, ?, ?, ?)",
        rows_in,
    )
    heads = [(states[s].head, states[s].closed, s) for s in written if s not in created]
    if heads:
        conn.executemany("UPDATE streams SET head = ?, closed = ? WHERE stream = ?", heads)
    for stream, kept in written.items():
        _apply(conn, stream, project(stream, [e for e, _ in kept]))
    outbox = outbox_rows(written)
    if outbox:  # the webhook outbox, in the events' transaction
        now = now_ms()
        enqueued = conn.executemany(
            SQLITE_ENQUEUE,
            [(s, seq, kind_of, now, kind, key) for s, seq, kind_of, kind, key in outbox],
        )
        note(enqueued.rowcount)
    return outcomes


def read_events(
    conn: sqlite3.Connection, stream: str, after: int, limit: int | None
) -> list[StoredEvent]:
    rows = conn.execute(
        "SELECT seq, type, ts, closes, data FROM events"
        " WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?",
        (stream, after, -1 if limit is None else limit),
    ).fetchall()
    if not rows:
        return []
    (epoch,) = conn.execute("SELECT epoch FROM streams WHERE stream = ?", (stream,)).fetchone()
    return [
        StoredEvent(stream, r[0], r[1], r[2], orjson.loads(r[4]), bool(r[3]), epoch) for r in rows
    ]


def read_latest_of_type(
    conn: sqlite3.Connection, bounds: Sequence[tuple[str, int]], event_type: str
) -> dict[str, StoredEvent]:
    """Each stream's newest ``event_type`` event at or below its bound (at most
    ``MAX_BOUNDS`` bounds: SQLite caps a statement's parameters)."""
    if not bounds:
        return {}
    values = ",".join(["(?, ?)"] * len(bounds))
    rows = conn.execute(
        f"WITH b(stream, upto) AS (VALUES {values})"
        " SELECT e.stream, e.seq, e.type, e.ts, e.closes, e.data, s.epoch FROM b"
        " JOIN events e ON e.stream = b.stream AND e.seq = ("
        "   SELECT seq FROM events WHERE stream = b.stream AND seq <= b.upto AND type = ?"
        "   ORDER BY seq DESC LIMIT 1)"  # backwards on the primary key from the bound
        " JOIN streams s ON s.stream = b.stream",
        (*(v for bound in bounds for v in bound), event_type),
    )
    return {
        r[0]: StoredEvent(r[0], r[1], r[2], r[3], orjson.loads(r[5]), bool(r[4]), r[6])
        for r in rows
    }


def read_segment_heads(
    conn: sqlite3.Connection, stream: str, segments: Collection[str]
) -> dict[str, tuple[int | None, int | None]]:
    names = list(segments)
    marks = ",".join("?" * len(names))
    rows = conn.execute(
        "SELECT segment_id, last_final, last_partial FROM segments"
        f" WHERE stream = ? AND segment_id IN ({marks})",
        (stream, *names),
    )
    return {segment: (final, partial) for segment, final, partial in rows}


def _apply(conn: sqlite3.Connection, stream: str, projection: Projection) -> None:
    """Write an append's projections (``rules.project``) in its transaction."""
    row = projection.row
    if row is not None:
        columns = ", ".join(f"{column} = ?" for column in row.changes)
        conn.execute(
            f"UPDATE {row.table} SET {columns} WHERE id = ?", (*row.changes.values(), row.id)
        )
    if projection.segments:
        conn.executemany(
            "INSERT INTO segments (stream, segment_id, last_final, last_partial)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (stream, segment_id) DO UPDATE SET"
            " last_final = coalesce(excluded.last_final, last_final),"
            " last_partial = coalesce(excluded.last_partial, last_partial)",
            [(stream, segment, *head) for segment, head in projection.segments.items()],
        )
