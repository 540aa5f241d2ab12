"""The event log's SQL, run inside a caller's transaction (SQLite)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from scribeline.errors import StreamClosed
from scribeline.events import TERMINAL_STATUSES, EventType, NewEvent, StoredEvent

__all__ = ["append_events", "project", "read_events"]


def append_events(
    conn: sqlite3.Connection, stream: str, events: Sequence[NewEvent]
) -> list[StoredEvent]:
    """Append inside the caller's transaction (storage's one way to assign seqs)."""
    row = conn.execute("SELECT head, closed FROM streams WHERE stream = ?", (stream,)).fetchone()
    if row is None:
        head, closed = 0, False
        conn.execute(
            "INSERT INTO streams (stream, epoch, head, closed) VALUES (?, ?, 0, 0)",
            (stream, secrets.token_hex(8)),
        )
    else:
        head, closed = row[0], bool(row[1])
    stored: list[StoredEvent] = []
    rows: list[tuple[Any, ...]] = []
    for event in events:
        if closed:
            raise StreamClosed(f"Stream {stream} has ended")
        head += 1
        closed = event.closes
        stored.append(StoredEvent(stream, head, event.type, event.ts, event.data, event.closes))
        rows.append((stream, head, event.type, event.ts, event.closes, orjson.dumps(event.data)))
    conn.executemany(
        "INSERT INTO events (stream, seq, type, ts, closes, data) VALUES (?, ?, ?, ?, ?, ?)", rows
    )
    conn.execute("UPDATE streams SET head = ?, closed = ? WHERE stream = ?", (head, closed, stream))
    project(conn, stream, stored)
    return stored


def read_events(
    conn: sqlite3.Connection, stream: str, after: int, limit: int | None
) -> list[StoredEvent]:
    rows = conn.execute(
        "SELECT seq, type, ts, closes, data FROM events"
        " WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?",
        (stream, after, -1 if limit is None else limit),
    ).fetchall()
    return [StoredEvent(stream, r[0], r[1], r[2], orjson.loads(r[4]), bool(r[3])) for r in rows]


def project(conn: sqlite3.Connection, stream: str, events: list[StoredEvent]) -> None:
    """Keep each call's ``status`` equal to its latest status event, in the same transaction."""
    if not stream.startswith("call:"):
        return
    for event in events:
        if event.type == EventType.CALL_STATUS:
            status = event.data["status"]
            ended = event.ts if status in TERMINAL_STATUSES else None
            conn.execute(
                "UPDATE calls SET status = ?, ended_at = ? WHERE id = ?",
                (status, ended, int(stream[5:])),
            )
