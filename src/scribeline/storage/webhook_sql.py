"""SQL that both backends' webhook stores share, and their rows as objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from scribeline.storage.base_webhooks import Attempt, Delivery, Endpoint, Finish

__all__ = [
    "ENDPOINT_COLUMNS",
    "HEADS",
    "OPEN",
    "PURGE_BATCH",
    "ROW_COLUMNS",
    "claim_filter",
    "delivery_of",
    "endpoint_of",
    "settled_state",
    "subject_sql",
]

ENDPOINT_COLUMNS = (
    "id, org_id, url, events, secret_sealed, enabled, disabled_reason, failing_since,"
    " created_at, updated_at"
)
ROW_COLUMNS = (
    "id, stream, seq, event_type, state, attempts, next_attempt_at, created_at, delivered_at"
)
#: Finished rows one ``purge_deliveries`` deletes at most (a caller with more to
#: purge calls it again).
PURGE_BATCH = 10_000
#: An outbox row a deliverer may hold or take (the partial indexes' condition).
OPEN = "state IN ('pending', 'sending')"


#: ``heads(id)``: the oldest open row of each endpoint and stream, found by a
#: skip scan of ``ix_webhook_outbox_order`` (one index seek per endpoint and
#: stream with open rows), so that a claim never reads the rows queued behind
#: them: a call whose first open row waits for its retry may have thousands
#: queued after it (an endpoint down for hours), all due and none claimable, and
#: a claim runs about once a second on every node, on the writer.
HEADS = (
    "WITH RECURSIVE heads(id, endpoint_id, stream) AS ("
    f"  SELECT * FROM (SELECT id, endpoint_id, stream FROM webhook_outbox WHERE {OPEN}"
    "    ORDER BY endpoint_id, stream, seq, id LIMIT 1) AS first"
    "  UNION ALL"
    "  SELECT n.id, n.endpoint_id, n.stream FROM heads h JOIN webhook_outbox n ON n.id ="
    # The next stream of the endpoint, else the first of the next endpoint (two
    # seeks: a row value comparison would seek on endpoint_id alone).
    "   coalesce((SELECT q.id FROM webhook_outbox q WHERE q.endpoint_id = h.endpoint_id"
    f"    AND q.stream > h.stream AND q.{OPEN} ORDER BY q.stream, q.seq, q.id LIMIT 1),"
    f"   (SELECT q.id FROM webhook_outbox q WHERE q.endpoint_id > h.endpoint_id AND q.{OPEN}"
    "    ORDER BY q.endpoint_id, q.stream, q.seq, q.id LIMIT 1))"
    ")"
)


def claim_filter(now: str) -> str:
    """Which rows ``o`` are claimable at ``now`` (a placeholder), with ``HEADS``
    before the statement: due, not held by a live lease, of an enabled endpoint,
    and the oldest open row of their endpoint and stream (the order per call:
    ``heads``, read in the statement's snapshot)."""
    return (
        f"o.id IN (SELECT id FROM heads) AND o.{OPEN} AND o.next_attempt_at <= {now}"
        f" AND (o.state = 'pending' OR o.lease_until < {now})"
        " AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = o.endpoint_id AND e.enabled)"
    )


def subject_sql(stream: str, mark: str) -> tuple[str, int] | None:
    """The query (and its one argument) for what names a stream's subject in a
    webhook body: a call's SID, a bot's public id (None: a campaign, named by id)."""
    kind, _, key = stream.partition(":")
    if kind == "call":
        return f"SELECT call_sid FROM calls WHERE id = {mark}", int(key)
    if kind == "bot":
        return f"SELECT public_id FROM bots WHERE id = {mark}", int(key)
    return None


def endpoint_of(row: Any) -> Endpoint:
    """An endpoint from a row (a tuple or a record) read with ``ENDPOINT_COLUMNS``."""
    events = row[3]
    return Endpoint(
        row[0], row[1], row[2], tuple(orjson.loads(events)), bytes(row[4]), bool(row[5]),
        row[6], row[7], row[8], row[9],
    )  # fmt: skip


def delivery_of(row: Any, log: Iterable[Attempt]) -> Delivery:
    """A delivery from a row read with ``ROW_COLUMNS`` and its attempts."""
    open_ = row[4] in ("pending", "sending")
    return Delivery(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6] if open_ else None, row[7],
        row[8], tuple(log),
    )  # fmt: skip


def settled_state(finish: Finish) -> tuple[str, int]:
    """The state an attempt leaves its row in, and its ``next_attempt_at``."""
    done = finish.at + finish.duration_ms
    if finish.delivered:
        return "delivered", done
    if finish.retry_at is not None:
        return "pending", finish.retry_at
    return "dead", done
