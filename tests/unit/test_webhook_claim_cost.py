"""A claim reads the head of each call's queue, never the rows queued behind it."""

from __future__ import annotations

from pathlib import Path

from scribeline.storage import migrate
from scribeline.storage.sqlite_db import connect
from scribeline.storage.sqlite_webhooks import _claim

STREAMS, QUEUED = 40, 250


def test_a_claim_does_not_read_the_rows_queued_behind_a_waiting_head(tmp_path: Path) -> None:
    """An endpoint down for a while: each call's first row waits for its retry and
    thousands are queued behind them, all due, none claimable. A claim (about one
    a second on every node, on the writer) must cost about the number of calls,
    not the number of rows: counted in SQLite VM steps, deterministic."""
    path = tmp_path / "claim.db"
    migrate.upgrade(f"sqlite:///{path}")
    conn = connect(path)
    now = 1_000_000_000
    conn.execute("INSERT INTO organizations (name, created_at) VALUES ('o', 0)")
    conn.execute(
        "INSERT INTO webhook_endpoints (org_id, url, events, secret_sealed, enabled,"
        " created_at, updated_at) VALUES (1, 'https://example.com/', '[]', x'00', 1, 0, 0)"
    )
    rows = [
        (f"call:{s}", seq, now + 3_600_000 if seq == 1 else now - 1000)
        for s in range(STREAMS)
        for seq in range(1, QUEUED + 1)
    ]
    conn.executemany(
        "INSERT INTO webhook_outbox (endpoint_id, stream, seq, event_type, state, attempts,"
        " next_attempt_at, created_at) VALUES (1, ?, ?, 'transcript.final', 'pending', 1, ?, 0)",
        rows,
    )
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(count, 100)  # called every 100 VM instructions
    conn.execute("BEGIN IMMEDIATE")
    assert _claim(conn, now, 30_000, "t", 16) == []
    conn.execute("ROLLBACK")
    conn.set_progress_handler(None, 0)
    # About 100 instructions per call's head; reading every queued row costs
    # far more than one each.
    assert steps[0] < STREAMS * 5, f"{steps[0] * 100} VM steps for {len(rows)} queued rows"
    # Once the heads are due, one row per call is claimed: the order per call stands.
    conn.execute("BEGIN IMMEDIATE")
    claimed = _claim(conn, now + 3_600_000, 30_000, "t", 100)
    conn.execute("COMMIT")
    assert sorted((c.stream, c.seq) for c in claimed) == sorted(
        (f"call:{s}", 1) for s in range(STREAMS)
    )
    conn.close()
