"""Campaigns on SQLite: contacts, counters and the campaign's event stream.

Every change to a contact computes the campaign's counters with one query in
the same transaction and stores them with the event it appends, so each
event carries a consistent snapshot, and a restarted server or another node
reports the same numbers. Every contact status change appends a
``contact_update`` in its transaction; the latest one is the "latest contact"
that progress events carry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import replace
from typing import Any

import orjson

from scribeline.domain import Call, Campaign, CampaignStatus, Contact, ContactStatus, Counters
from scribeline.errors import StreamClosed
from scribeline.events import EventType, NewEvent, Position, StoredEvent, now_ms
from scribeline.storage.rules import (
    campaign_stream,
    check_open,
    check_outcome,
    check_recordable,
    check_running,
    check_startable,
    check_takeable,
    counters_of,
    linked_duration,
    outcome_events,
    taken_event,
)
from scribeline.storage.sqlite_db import SqliteDatabase
from scribeline.storage.sqlite_log import append_events

__all__ = [
    "SqliteCampaigns",
    "complete_linked_contact",
    "counters_in",
    "latest_contact_in",
    "take_contact",
]

_CAMPAIGN_COLUMNS = "id, org_id, assistant_id, name, status, created_at, started_at, completed_at"
_CONTACT_COLUMNS = "id, campaign_id, phone_number, name, status, call_sid, duration, error"


def _campaign(row: tuple[Any, ...]) -> Campaign:
    return Campaign(*row)


def _contact(row: tuple[Any, ...]) -> Contact:
    return Contact(*row)


def counters_in(conn: sqlite3.Connection, campaign_id: int) -> Counters:
    """The campaign's counters as of the caller's transaction."""
    return counters_of(
        conn.execute(
            "SELECT status, count(*), coalesce(sum(duration), 0) FROM campaign_contacts"
            " WHERE campaign_id = ? GROUP BY status",
            (campaign_id,),
        )
    )


def latest_contact_in(conn: sqlite3.Connection, campaign_id: int) -> dict[str, Any] | None:
    """The payload of the campaign's latest ``contact_update`` (None before the first).

    Read backwards along the stream's primary key: every contact change
    appends one, so it is usually a few events from the end. (Known limit: a
    campaign whose contacts have not changed since they were added, or that
    predates ``contact_update``, is scanned to its start; that is at most a
    few events per contact.)
    """
    row = conn.execute(
        "SELECT data FROM events WHERE stream = ? AND type = ? ORDER BY seq DESC LIMIT 1",
        (f"campaign:{campaign_id}", EventType.CONTACT_UPDATE),
    ).fetchone()
    if row is None:
        return None
    latest: dict[str, Any] = orjson.loads(row[0])
    return latest


def _with_latest(conn: sqlite3.Connection, campaign_id: int) -> Counters:
    counters = counters_in(conn, campaign_id)
    return replace(counters, latest_contact=latest_contact_in(conn, campaign_id))


def _running(conn: sqlite3.Connection, campaign_id: int) -> None:
    row = conn.execute("SELECT status FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
    check_running(campaign_id, None if row is None else row[0])


def take_contact(conn: sqlite3.Connection, call: Call) -> tuple[int, list[StoredEvent]]:
    """A call is placed to a contact: pending -> in progress (in the call's transaction).

    Returns the contact's campaign and the ``contact_update`` appended to its stream.
    """
    row = conn.execute(
        "SELECT c.status, c.campaign_id, k.org_id, k.status FROM campaign_contacts c"
        " JOIN campaigns k ON k.id = c.campaign_id WHERE c.id = ?",
        (call.campaign_contact_id,),
    ).fetchone()
    contact_id, campaign_id = check_takeable(call, row)
    conn.execute(
        "UPDATE campaign_contacts SET status = ?, call_sid = ?, updated_at = ? WHERE id = ?",
        (ContactStatus.IN_PROGRESS, call.call_sid, now_ms(), contact_id),
    )
    update = taken_event(_contact_by_id(conn, contact_id), call.started_at)
    return campaign_id, append_events(conn, campaign_stream(campaign_id), [update])


def _complete(
    conn: sqlite3.Connection, campaign_id: int, contact: Contact, ts: int
) -> list[StoredEvent]:
    """Events after a contact got its outcome: contact_update, contact_completed, and
    maybe the last progress and campaign_completed."""
    events, completes = outcome_events(contact, counters_in(conn, campaign_id), ts)
    if completes:
        conn.execute(
            "UPDATE campaigns SET status = ?, completed_at = ? WHERE id = ?",
            (CampaignStatus.COMPLETED, ts, campaign_id),
        )
    return append_events(conn, campaign_stream(campaign_id), events)


def _set_outcome(
    conn: sqlite3.Connection,
    contact_id: int,
    outcome: str,
    duration: float | None,
    call_sid: str | None,
    error: str | None,
) -> Contact:
    conn.execute(
        "UPDATE campaign_contacts SET status = ?, duration = coalesce(?, duration),"
        " call_sid = coalesce(?, call_sid), error = ?, updated_at = ? WHERE id = ?",
        (outcome, duration, call_sid, error, now_ms(), contact_id),
    )
    return _contact_by_id(conn, contact_id)


def _contact_by_id(conn: sqlite3.Connection, contact_id: int) -> Contact:
    row = conn.execute(
        f"SELECT {_CONTACT_COLUMNS} FROM campaign_contacts WHERE id = ?", (contact_id,)
    ).fetchone()
    return _contact(row)


def complete_linked_contact(
    conn: sqlite3.Connection, call: Call, outcome: str, ts: int
) -> list[StoredEvent]:
    """A linked call ended: its contact gets ``outcome`` unless it already has one."""
    row = conn.execute(
        "SELECT status FROM campaign_contacts WHERE id = ?", (call.campaign_contact_id,)
    ).fetchone()
    if row is None or row[0] != ContactStatus.IN_PROGRESS or call.campaign_id is None:
        return []
    assert call.campaign_contact_id is not None
    duration = linked_duration(call, ts)
    contact = _set_outcome(conn, call.campaign_contact_id, outcome, duration, call.call_sid, None)
    return _complete(conn, call.campaign_id, contact, ts)


class SqliteCampaigns:
    """The CampaignStore methods of the SQLite backend."""

    _db: SqliteDatabase

    async def create_campaign(self, org_id: int, assistant_id: int, name: str) -> Campaign:
        def run(conn: sqlite3.Connection) -> Campaign:
            created = now_ms()
            cur = conn.execute(
                "INSERT INTO campaigns (org_id, assistant_id, name, status, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (org_id, assistant_id, name, CampaignStatus.DRAFT, created),
            )
            assert cur.lastrowid is not None
            return Campaign(
                cur.lastrowid, org_id, assistant_id, name, CampaignStatus.DRAFT, created, None, None
            )

        return await self._db.write(run)

    async def get_campaign(self, org_id: int, campaign_id: int) -> Campaign | None:
        def run(conn: sqlite3.Connection) -> Campaign | None:
            row = conn.execute(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE org_id = ? AND id = ?",
                (org_id, campaign_id),
            ).fetchone()
            return None if row is None else _campaign(row)

        return self._db.read_now(run)

    async def list_campaigns(self, org_id: int, limit: int) -> list[Campaign]:
        def run(conn: sqlite3.Connection) -> list[Campaign]:
            rows = conn.execute(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE org_id = ?"
                " ORDER BY id DESC LIMIT ?",
                (org_id, limit),
            ).fetchall()
            return [_campaign(r) for r in rows]

        return self._db.read_now(run)

    async def add_contacts(
        self, campaign_id: int, contacts: list[tuple[str, str | None]]
    ) -> list[Contact]:
        def run(conn: sqlite3.Connection) -> list[Contact]:
            row = conn.execute(
                "SELECT status FROM campaigns WHERE id = ?", (campaign_id,)
            ).fetchone()
            check_open(campaign_id, None if row is None else row[0])
            added: list[Contact] = []
            ts = now_ms()
            for phone, name in contacts:
                cur = conn.execute(
                    "INSERT INTO campaign_contacts (campaign_id, phone_number, name, status,"
                    " updated_at) VALUES (?, ?, ?, ?, ?)",
                    (campaign_id, phone, name, ContactStatus.PENDING, ts),
                )
                assert cur.lastrowid is not None
                added.append(
                    Contact(
                        cur.lastrowid,
                        campaign_id,
                        phone,
                        name,
                        ContactStatus.PENDING,
                        None,
                        None,
                        None,
                    )
                )
            return added

        return await self._db.write(run)

    async def list_contacts(
        self, campaign_id: int, after: int = 0, limit: int | None = None
    ) -> list[Contact]:
        def run(conn: sqlite3.Connection) -> list[Contact]:
            rows = conn.execute(
                f"SELECT {_CONTACT_COLUMNS} FROM campaign_contacts"
                " WHERE campaign_id = ? AND id > ? ORDER BY id LIMIT ?",
                (campaign_id, after, -1 if limit is None else limit),
            ).fetchall()
            return [_contact(r) for r in rows]

        return await self._db.read(run)

    async def start_campaign(self, campaign_id: int) -> Campaign:
        def run(conn: sqlite3.Connection) -> Campaign:
            row = conn.execute(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign_id,)
            ).fetchone()
            campaign = None if row is None else _campaign(row)
            check_startable(campaign_id, campaign, counters_in(conn, campaign_id).total)
            assert campaign is not None
            started = now_ms()
            conn.execute(
                "UPDATE campaigns SET status = ?, started_at = ? WHERE id = ?",
                (CampaignStatus.RUNNING, started, campaign_id),
            )
            return Campaign(
                campaign.id,
                campaign.org_id,
                campaign.assistant_id,
                campaign.name,
                CampaignStatus.RUNNING,
                campaign.created_at,
                started,
                None,
            )

        return await self._db.write(run)

    async def record_outcome(
        self,
        campaign_id: int,
        contact_id: int,
        outcome: str,
        duration: float | None,
        call_sid: str | None,
        error: str | None,
    ) -> tuple[Contact, list[StoredEvent]]:
        check_outcome(outcome)

        def run(conn: sqlite3.Connection) -> tuple[Contact, list[StoredEvent]]:
            row = conn.execute(
                "SELECT status FROM campaign_contacts WHERE id = ? AND campaign_id = ?",
                (contact_id, campaign_id),
            ).fetchone()
            if row is None:
                check_recordable(contact_id, None)
            _running(conn, campaign_id)
            check_recordable(contact_id, row[0])
            contact = _set_outcome(conn, contact_id, outcome, duration, call_sid, error)
            return contact, _complete(conn, campaign_id, contact, now_ms())

        return await self._db.write(run)

    async def counters_of_campaigns(self, campaign_ids: Collection[int]) -> dict[int, Counters]:
        ids = list(campaign_ids)

        def run(conn: sqlite3.Connection) -> dict[int, Counters]:
            rows: dict[int, list[tuple[str, int, float]]] = {i: [] for i in ids}
            for campaign_id, status, count, duration in conn.execute(
                "SELECT campaign_id, status, count(*), coalesce(sum(duration), 0)"
                " FROM campaign_contacts WHERE campaign_id IN"
                f" ({', '.join('?' * len(ids))}) GROUP BY campaign_id, status",
                ids,
            ):
                rows[campaign_id].append((status, count, duration))
            return {i: counters_of(r) for i, r in rows.items()}

        return self._db.read_now(run) if ids else {}

    async def campaign_snapshot(self, campaign_id: int) -> tuple[Position, Counters]:
        def run(conn: sqlite3.Connection) -> tuple[Position, Counters]:
            conn.execute("BEGIN")  # one read snapshot for both (WAL)
            try:
                row = conn.execute(
                    "SELECT head, epoch FROM streams WHERE stream = ?", (f"campaign:{campaign_id}",)
                ).fetchone()
                counters = _with_latest(conn, campaign_id)
            finally:
                conn.execute("COMMIT")
            return (Position(0, "") if row is None else Position(row[0], row[1])), counters

        return self._db.read_now(run)

    async def append_progress(self, campaign_id: int) -> StoredEvent | None:
        def run(conn: sqlite3.Connection) -> StoredEvent | None:
            event = NewEvent(EventType.PROGRESS, _with_latest(conn, campaign_id).progress())
            try:
                (stored,) = append_events(conn, campaign_stream(campaign_id), [event])
            except StreamClosed:
                return None
            return stored

        return await self._db.write(run)
