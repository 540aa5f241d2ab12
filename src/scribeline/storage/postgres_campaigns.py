"""Campaigns on PostgreSQL: contacts, counters and the campaign's event stream.

The rules are ``storage.rules``; this is their SQL. Every change to a
campaign's contacts first locks the campaign's row (``FOR UPDATE``), so the
changes of one campaign are serialized across nodes: the counters each event
carries are those right after its own change, and exactly one change sees
the last contact complete.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from scribeline.domain import Call, Campaign, CampaignStatus, Contact, ContactStatus, Counters
from scribeline.errors import StreamClosed
from scribeline.events import EventType, NewEvent, Position, StoredEvent, now_ms
from scribeline.storage.postgres_db import PostgresDatabase
from scribeline.storage.postgres_log import append_one
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

if TYPE_CHECKING:
    from scribeline.storage.postgres_db import Conn

__all__ = ["PostgresCampaigns", "complete_linked_contact", "take_contact"]

_CAMPAIGN = "id, org_id, assistant_id, name, status, created_at, started_at, completed_at"
_CONTACT = "id, campaign_id, phone_number, name, status, call_sid, duration, error"
_COUNTS = (
    "SELECT status, count(*) AS contacts, coalesce(sum(duration), 0) AS duration"
    " FROM campaign_contacts WHERE campaign_id = $1 GROUP BY status"
)
_LATEST = (
    "SELECT data FROM events WHERE stream = $1 AND type = 'contact_update'"
    " ORDER BY seq DESC LIMIT 1"
)
# One statement, so one snapshot: the head and the counters as of one moment.
_SNAPSHOT = f"""
SELECT s.head, s.epoch, latest.data, counts.statuses, counts.contacts, counts.durations
FROM (SELECT 1) AS one
LEFT JOIN streams AS s ON s.stream = $1
LEFT JOIN LATERAL ({_LATEST}) AS latest ON true
CROSS JOIN (
    SELECT array_agg(status) AS statuses, array_agg(contacts) AS contacts,
           array_agg(duration) AS durations
    FROM ({_COUNTS.replace("$1", "$2")}) AS g
) AS counts
"""


def _contact(row: asyncpg.Record | None) -> Contact:
    assert row is not None  # a row the statement just wrote or locked
    return Contact(**row)


def _campaign(row: asyncpg.Record | None) -> Campaign:
    assert row is not None  # a row the statement just wrote or locked
    return Campaign(**row)


async def _lock(conn: Conn, campaign_id: int) -> str | None:
    """Lock the campaign's row for the transaction; its status (None: no such campaign)."""
    status: str | None = await conn.fetchval(
        "SELECT status FROM campaigns WHERE id = $1 FOR UPDATE", campaign_id
    )
    return status


async def _counters(conn: Conn, campaign_id: int, latest: bool = False) -> Counters:
    counters = counters_of(tuple(r) for r in await conn.fetch(_COUNTS, campaign_id))
    if not latest:
        return counters
    data = await conn.fetchval(_LATEST, campaign_stream(campaign_id))
    return replace(counters, latest_contact=_loads(data))


def _loads(data: bytes | None) -> dict[str, Any] | None:
    return None if data is None else dict(orjson.loads(data))


async def take_contact(conn: Conn, call: Call) -> tuple[int, list[StoredEvent]]:
    """A call is placed to a contact: pending -> in progress (in the call's transaction).

    Returns the contact's campaign and the ``contact_update`` appended to its stream.
    """
    campaign = await conn.fetchrow(
        "SELECT k.id, k.org_id, k.status FROM campaigns k"
        " JOIN campaign_contacts c ON c.campaign_id = k.id WHERE c.id = $1 FOR UPDATE OF k",
        call.campaign_contact_id,
    )
    found = None
    if campaign is not None:  # read after the lock: the contact's latest status
        status = await conn.fetchval(
            "SELECT status FROM campaign_contacts WHERE id = $1", call.campaign_contact_id
        )
        found = (status, campaign["id"], campaign["org_id"], campaign["status"])
    contact_id, campaign_id = check_takeable(call, found)
    row = await conn.fetchrow(
        "UPDATE campaign_contacts SET status = $2, call_sid = $3, updated_at = $4"
        f" WHERE id = $1 RETURNING {_CONTACT}",
        contact_id,
        ContactStatus.IN_PROGRESS,
        call.call_sid,
        now_ms(),
    )
    update = taken_event(_contact(row), call.started_at)
    return campaign_id, await append_one(conn, campaign_stream(campaign_id), [update])


async def _set_outcome(
    conn: Conn,
    contact_id: int,
    outcome: str,
    duration: float | None,
    call_sid: str | None,
    error: str | None,
) -> Contact:
    row = await conn.fetchrow(
        "UPDATE campaign_contacts SET status = $2, duration = coalesce($3, duration),"
        " call_sid = coalesce($4, call_sid), error = $5, updated_at = $6"
        f" WHERE id = $1 RETURNING {_CONTACT}",
        contact_id,
        outcome,
        duration,
        call_sid,
        error,
        now_ms(),
    )
    return _contact(row)


async def _complete(conn: Conn, campaign_id: int, contact: Contact, ts: int) -> list[StoredEvent]:
    events, completes = outcome_events(contact, await _counters(conn, campaign_id), ts)
    if completes:
        await conn.execute(
            "UPDATE campaigns SET status = $2, completed_at = $3 WHERE id = $1",
            campaign_id,
            CampaignStatus.COMPLETED,
            ts,
        )
    return await append_one(conn, campaign_stream(campaign_id), events)


async def complete_linked_contact(
    conn: Conn, call: Call, outcome: str, ts: int
) -> list[StoredEvent]:
    """A linked call ended: its contact gets ``outcome`` unless it already has one."""
    if call.campaign_id is None or call.campaign_contact_id is None:
        return []
    await _lock(conn, call.campaign_id)
    status = await conn.fetchval(
        "SELECT status FROM campaign_contacts WHERE id = $1", call.campaign_contact_id
    )
    if status != ContactStatus.IN_PROGRESS:
        return []
    duration = linked_duration(call, ts)
    contact = await _set_outcome(
        conn, call.campaign_contact_id, outcome, duration, call.call_sid, None
    )
    return await _complete(conn, call.campaign_id, contact, ts)


class PostgresCampaigns:
    """The CampaignStore methods of the PostgreSQL backend."""

    _db: PostgresDatabase

    async def create_campaign(self, org_id: int, assistant_id: int, name: str) -> Campaign:
        async def run(conn: Conn) -> Campaign:
            row = await conn.fetchrow(
                "INSERT INTO campaigns (org_id, assistant_id, name, status, created_at)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {_CAMPAIGN}",
                org_id,
                assistant_id,
                name,
                CampaignStatus.DRAFT,
                now_ms(),
            )
            return _campaign(row)

        return await self._db.write(run)

    async def get_campaign(self, org_id: int, campaign_id: int) -> Campaign | None:
        row = await self._db.read(
            lambda c: c.fetchrow(
                f"SELECT {_CAMPAIGN} FROM campaigns WHERE org_id = $1 AND id = $2",
                org_id,
                campaign_id,
            )
        )
        return None if row is None else Campaign(**row)

    async def list_campaigns(self, org_id: int, limit: int) -> list[Campaign]:
        rows = await self._db.read(
            lambda c: c.fetch(
                f"SELECT {_CAMPAIGN} FROM campaigns WHERE org_id = $1 ORDER BY id DESC LIMIT $2",
                org_id,
                limit,
            )
        )
        return [Campaign(**row) for row in rows]

    async def add_contacts(
        self, campaign_id: int, contacts: list[tuple[str, str | None]]
    ) -> list[Contact]:
        async def run(conn: Conn) -> list[Contact]:
            check_open(campaign_id, await _lock(conn, campaign_id))
            rows = await conn.fetch(
                "INSERT INTO campaign_contacts (campaign_id, phone_number, name, status,"
                " updated_at) SELECT $1, p, n, $4, $5"
                " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(p, n, o) ORDER BY o"
                f" RETURNING {_CONTACT}",
                campaign_id,
                [phone for phone, _ in contacts],
                [name for _, name in contacts],
                ContactStatus.PENDING,
                now_ms(),
            )
            # Ids follow the insertion order, which follows the input's.
            return sorted(map(_contact, rows), key=lambda contact: contact.id)

        return await self._db.write(run)

    async def list_contacts(
        self, campaign_id: int, after: int = 0, limit: int | None = None
    ) -> list[Contact]:
        rows = await self._db.read(
            lambda c: c.fetch(
                f"SELECT {_CONTACT} FROM campaign_contacts"
                " WHERE campaign_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                campaign_id,
                after,
                limit,  # NULL: no limit
            )
        )
        return [_contact(row) for row in rows]

    async def start_campaign(self, campaign_id: int) -> Campaign:
        async def run(conn: Conn) -> Campaign:
            await _lock(conn, campaign_id)
            row = await conn.fetchrow(
                f"SELECT {_CAMPAIGN} FROM campaigns WHERE id = $1", campaign_id
            )
            campaign = None if row is None else Campaign(**row)
            total = (await _counters(conn, campaign_id)).total
            check_startable(campaign_id, campaign, total)
            row = await conn.fetchrow(
                "UPDATE campaigns SET status = $2, started_at = $3"
                f" WHERE id = $1 RETURNING {_CAMPAIGN}",
                campaign_id,
                CampaignStatus.RUNNING,
                now_ms(),
            )
            return _campaign(row)

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

        async def run(conn: Conn) -> tuple[Contact, list[StoredEvent]]:
            status = await _lock(conn, campaign_id)
            current = await conn.fetchval(
                "SELECT status FROM campaign_contacts WHERE id = $1 AND campaign_id = $2",
                contact_id,
                campaign_id,
            )
            if current is None:
                check_recordable(contact_id, None)
            check_running(campaign_id, status)
            check_recordable(contact_id, current)
            contact = await _set_outcome(conn, contact_id, outcome, duration, call_sid, error)
            return contact, await _complete(conn, campaign_id, contact, now_ms())

        return await self._db.write(run)

    async def counters_of_campaigns(self, campaign_ids: Collection[int]) -> dict[int, Counters]:
        ids = list(campaign_ids)
        if not ids:
            return {}
        rows = await self._db.read(
            lambda c: c.fetch(
                "SELECT campaign_id, status, count(*), coalesce(sum(duration), 0)"
                " FROM campaign_contacts WHERE campaign_id = ANY($1::int8[])"
                " GROUP BY campaign_id, status",
                ids,
            )
        )
        grouped: dict[int, list[tuple[str, int, float]]] = {i: [] for i in ids}
        for campaign_id, status, count, duration in rows:
            grouped[campaign_id].append((status, count, duration))
        return {i: counters_of(counts) for i, counts in grouped.items()}

    async def campaign_snapshot(self, campaign_id: int) -> tuple[Position, Counters]:
        row = await self._db.read(
            lambda c: c.fetchrow(_SNAPSHOT, campaign_stream(campaign_id), campaign_id)
        )
        assert row is not None  # the statement always returns one row
        statuses, contacts, durations = (row[3] or [], row[4] or [], row[5] or [])
        counters = counters_of(zip(statuses, contacts, durations, strict=True))
        counters = replace(counters, latest_contact=_loads(row[2]))
        position = Position(0, "") if row[0] is None else Position(row[0], row[1])
        return position, counters

    async def append_progress(self, campaign_id: int) -> StoredEvent | None:
        async def run(conn: Conn) -> StoredEvent | None:
            await _lock(conn, campaign_id)
            counters = await _counters(conn, campaign_id, latest=True)
            event = NewEvent(EventType.PROGRESS, counters.progress())
            try:
                (stored,) = await append_one(conn, campaign_stream(campaign_id), [event])
            except StreamClosed:
                return None
            return stored

        return await self._db.write(run)
