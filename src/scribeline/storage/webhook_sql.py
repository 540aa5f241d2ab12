"""SQL that both backends' webhook stores share, and their rows as objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from scribeline.storage.base_webhooks import Attempt, Delivery, Endpoint, Finish

__all__ = [
    "ENDPOINT_COLUMNS",
    "OPEN",
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
#: An outbox row a deliverer may hold or take (the partial indexes' condition).
OPEN = "state IN ('pending', 'sending')"


def claim_filter(now: str) -> str:
    """Which rows ``o`` are claimable at ``now`` (a placeholder): due, not held by
    a live lease, of an enabled endpoint, and the oldest open row of their
    endpoint and stream (the order per call)."""
    return (
        f"o.{OPEN} AND o.next_attempt_at <= {now}"
        f" AND (o.state = 'pending' OR o.lease_until < {now})"
        " AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = o.endpoint_id AND e.enabled)"
        " AND NOT EXISTS (SELECT 1 FROM webhook_outbox p"
        f"   WHERE p.endpoint_id = o.endpoint_id AND p.stream = o.stream AND p.{OPEN}"
        "   AND (p.seq < o.seq OR (p.seq = o.seq AND p.id < o.id)))"
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
