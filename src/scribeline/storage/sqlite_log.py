"""The event log's SQL, run inside a caller's transaction (SQLite)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

import orjson

from scribeline.domain import BotStatus
from scribeline.errors import StreamClosed
from scribeline.events import TERMINAL_STATUSES, BotEventType, EventType, NewEvent, StoredEvent
from scribeline.recovery import segment_entry

__all__ = ["append_events", "project", "read_events", "read_segment_heads"]


def append_events(
    conn: sqlite3.Connection, stream: str, events: Sequence[NewEvent]
) -> list[StoredEvent]:
    """Append inside the caller's transaction (storage's one way to assign seqs)."""
    row = conn.execute(
        "SELECT head, closed, epoch FROM streams WHERE stream = ?", (stream,)
    ).fetchone()
    if row is None:
        head, closed, epoch = 0, False, secrets.token_hex(8)
        conn.execute(
            "INSERT INTO streams (stream, epoch, head, closed) VALUES (?, ?, 0, 0)",
            (stream, epoch),
        )
    else:
        head, closed, epoch = row[0], bool(row[1]), row[2]
    stored: list[StoredEvent] = []
    rows: list[tuple[Any, ...]] = []
    for event in events:
        if closed:
            raise StreamClosed(f"Stream {stream} has ended")
        head += 1
        closed = event.closes
        stored.append(
            StoredEvent(stream, head, event.type, event.ts, event.data, event.closes, epoch)
        )
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
    if not rows:
        return []
    (epoch,) = conn.execute("SELECT epoch FROM streams WHERE stream = ?", (stream,)).fetchone()
    return [
        StoredEvent(stream, r[0], r[1], r[2], orjson.loads(r[4]), bool(r[3]), epoch) for r in rows
    ]


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


def project(conn: sqlite3.Connection, stream: str, events: list[StoredEvent]) -> None:
    """Keep each call's and bot's ``status`` equal to what its latest events say,
    in the same transaction."""
    kind, _, key = stream.partition(":")
    if kind == "call":
        _project_call(conn, int(key), events)
        _project_segments(conn, stream, events)
    elif kind == "bot":
        _project_bot(conn, int(key), events)


def _project_call(conn: sqlite3.Connection, call_id: int, events: list[StoredEvent]) -> None:
    for event in events:
        if event.type == EventType.CALL_STATUS:
            status = event.data["status"]
            ended = event.ts if status in TERMINAL_STATUSES else None
            conn.execute(
                "UPDATE calls SET status = ?, ended_at = ? WHERE id = ?", (status, ended, call_id)
            )


def _project_segments(conn: sqlite3.Connection, stream: str, events: list[StoredEvent]) -> None:
    """Each transcript segment's latest final and partial (``segments``)."""
    rows = [
        (stream, segment, seq if final else None, None if final else seq)
        for seq, segment, final in (e for e in map(segment_entry, events) if e is not None)
    ]
    if rows:
        conn.executemany(
            "INSERT INTO segments (stream, segment_id, last_final, last_partial)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (stream, segment_id) DO UPDATE SET"
            " last_final = coalesce(excluded.last_final, last_final),"
            " last_partial = coalesce(excluded.last_partial, last_partial)",
            rows,
        )


def _project_bot(conn: sqlite3.Connection, bot_id: int, events: list[StoredEvent]) -> None:
    for event in events:
        if event.type == BotEventType.START:
            conn.execute(
                "UPDATE bots SET status = ?, started_at = ? WHERE id = ?",
                (BotStatus.RECORDING, event.ts, bot_id),
            )
        elif event.type == BotEventType.STOP:
            conn.execute(
                "UPDATE bots SET status = ?, ended_at = ?, stop_reason = ? WHERE id = ?",
                (BotStatus.FINISHED, event.ts, event.data.get("reason"), bot_id),
            )
        elif event.type == BotEventType.ERROR:
            conn.execute(
                "UPDATE bots SET status = ?, ended_at = ?, error = ? WHERE id = ?",
                (BotStatus.FAILED, event.ts, event.data.get("message"), bot_id),
            )
