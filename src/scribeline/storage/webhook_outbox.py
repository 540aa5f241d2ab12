"""The webhook outbox's part of an append, shared by both backends.

An append that stores webhook events (``webhooks.types.webhook_type``) writes
their outbox rows in its own transaction; :func:`outbox_rows` picks them, and
the backends' statements (``SQLITE_ENQUEUE``, ``postgres_log``'s ``outbox_in``)
fan each out to the enabled endpoints of the stream's organization that
subscribe to its type. The organization comes from the stream's own row
(``calls``, ``bots`` or ``campaigns``).

Each writer (SQLite's thread, PostgreSQL's task) counts the rows it wrote
(:func:`note`), and takes the count after each batch (:func:`take`) to wake
this node's deliverer at once: a hint only (a batch that rolled back may have
counted rows); deliverers also poll.
"""

from __future__ import annotations

import contextvars

from scribeline.storage.rules import Stamped
from scribeline.webhooks.types import webhook_type

__all__ = ["SQLITE_ENQUEUE", "begin", "note", "outbox_rows", "take"]

#: One outbox row per matching endpoint of one event: ``(stream, seq, type, now,
#: kind, row id)``, with ``executemany``.
SQLITE_ENQUEUE = (
    "INSERT INTO webhook_outbox (endpoint_id, stream, seq, event_type, state, attempts,"
    " next_attempt_at, created_at)"
    " SELECT e.id, ?1, ?2, ?3, 'pending', 0, ?4, ?4 FROM webhook_endpoints e"
    " WHERE e.enabled AND e.org_id = (CASE ?5"
    "   WHEN 'call' THEN (SELECT org_id FROM calls WHERE id = ?6)"
    "   WHEN 'bot' THEN (SELECT org_id FROM bots WHERE id = ?6)"
    "   ELSE (SELECT org_id FROM campaigns WHERE id = ?6) END)"
    " AND EXISTS (SELECT 1 FROM json_each(e.events) WHERE value = ?3)"
    " ORDER BY e.id"
)

#: One row to fan out: stream, seq, webhook type, kind of stream, its row id.
OutboxRow = tuple[str, int, str, str, int]


def outbox_rows(written: Stamped) -> list[OutboxRow]:
    """The webhook events among an append's stored events, in seq order per stream."""
    rows: list[OutboxRow] = []
    for stream, kept in written.items():
        kind, _, key = stream.partition(":")
        if kind not in ("call", "bot", "campaign"):
            continue
        for event, _ in kept:
            found = webhook_type(stream, event.seq, event.type, event.data, event.closes)
            if found is not None:
                rows.append((stream, event.seq, found, kind, int(key)))
    return rows


_WRITTEN: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "webhook_outbox_written", default=None
)


def begin() -> None:
    """Count the outbox rows this writer (thread or task) writes from now on."""
    _WRITTEN.set([0])


def note(count: int) -> None:
    tally = _WRITTEN.get()
    if tally is not None:
        tally[0] += count


def take() -> int:
    """Rows written since the last ``take`` (0 outside a counting writer)."""
    tally = _WRITTEN.get()
    if tally is None:
        return 0
    count, tally[0] = tally[0], 0
    return count
