"""What every storage backend decides the same way: pure functions, no SQL.

A backend reads rows, asks these functions what follows from them (the seqs
of an append, the projections it updates, the events a campaign change
appends, whether a change is allowed) and writes the answer in the same
transaction. Keeping the decisions here makes each backend only SQL, and
keeps two backends from disagreeing about a rule.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from scribeline.domain import (
    OUTCOMES,
    SPEECH_FIELDS,
    ApiKey,
    BotStatus,
    Call,
    Campaign,
    CampaignStatus,
    Contact,
    ContactStatus,
    Counters,
)
from scribeline.errors import Conflict, InvalidRequest, NotFound, StreamClosed
from scribeline.events import (
    TERMINAL_STATUSES,
    BotEventType,
    EventType,
    NewEvent,
    StoredEvent,
)
from scribeline.numbers import parse_int
from scribeline.recovery import SegmentHead, segment_heads_of

__all__ = [
    "CALL_TABLES",
    "KEY_BATCH",
    "KEY_COLUMNS",
    "SESSION_RETENTION_MS",
    "Projection",
    "RowUpdate",
    "StreamState",
    "campaign_stream",
    "check_open",
    "check_outcome",
    "check_recordable",
    "check_running",
    "check_startable",
    "check_takeable",
    "counters_of",
    "key_lookup",
    "key_of",
    "linked_duration",
    "linked_outcome",
    "list_cursor",
    "new_stream",
    "outcome_events",
    "project",
    "scopes_of",
    "scopes_text",
    "speech_columns",
    "stamp",
    "status_filter",
    "taken_event",
]


# -- the event log ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamState:
    """A stream's head row: last seq, epoch, and whether it has ended."""

    head: int
    epoch: str
    closed: bool = False


def new_stream() -> StreamState:
    """The head row of a stream that has no events yet (a fresh random epoch)."""
    return StreamState(0, secrets.token_hex(8))


def stamp(
    stream: str, state: StreamState, events: Sequence[NewEvent]
) -> tuple[list[StoredEvent], StreamState]:
    """The stored form of ``events`` appended after ``state``, and the state after
    them. All or nothing: raises ``StreamClosed`` if any event would follow a
    closing one (the caller then writes nothing of this append)."""
    head, closed = state.head, state.closed
    stored: list[StoredEvent] = []
    for event in events:
        if closed:
            raise StreamClosed(f"Stream {stream} has ended")
        head += 1
        closed = event.closes
        stored.append(
            StoredEvent(stream, head, event.type, event.ts, event.data, event.closes, state.epoch)
        )
    return stored, StreamState(head, state.epoch, closed)


#: Per stream, each kept event with its data encoded (``stamp_each``), in order.
Stamped = dict[str, list[tuple[StoredEvent, bytes]]]


def stamp_each(
    appends: Sequence[tuple[str, Sequence[NewEvent]]], states: dict[str, StreamState]
) -> tuple[list[list[StoredEvent] | Exception], Stamped]:
    """:func:`stamp` each ``(stream, events)`` in order against ``states`` (updated
    for the appends kept), encoding each event's data. Returns, per append, its
    stored events or the error that refused it (``StreamClosed``, data that
    cannot be encoded: it changes nothing); and the kept events by stream."""
    outcomes: list[list[StoredEvent] | Exception] = []
    written: Stamped = {}
    for stream, events in appends:
        try:
            stored, after = stamp(stream, states[stream], events)
            data = [orjson.dumps(event.data) for event in stored]
        except Exception as exc:
            outcomes.append(exc)
            continue
        states[stream] = after
        outcomes.append(stored)
        written.setdefault(stream, []).extend(zip(stored, data, strict=True))
    return outcomes, written


@dataclass(frozen=True, slots=True)
class RowUpdate:
    """Columns of one ``calls`` or ``bots`` row to set (names are constants here)."""

    table: str
    id: int
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Projection:
    """What an append changes besides the events: the call's or bot's row, and
    the heads of the transcript segments it touched (merged into the stored
    ones: a None keeps the stored value)."""

    row: RowUpdate | None = None
    segments: dict[str, SegmentHead] = field(default_factory=dict)


def project(stream: str, events: Sequence[StoredEvent]) -> Projection:
    """The projections of ``events`` (one stream's, in seq order).

    A call's ``status`` follows its latest ``call_status`` (``ended_at`` set by
    a terminal one); a bot's follows ``start`` → recording, ``stop`` →
    finished (``data.reason``), ``error`` → failed (``data.message``). Later
    events of the batch win, as if each were applied in turn.
    """
    kind, _, key = stream.partition(":")
    changes: dict[str, Any] = {}
    if kind == "call":
        for event in events:
            if event.type == EventType.CALL_STATUS:
                status = event.data["status"]
                ended = event.ts if status in TERMINAL_STATUSES else None
                changes |= {"status": status, "ended_at": ended}
        segments = segment_heads_of(events)
        row = RowUpdate("calls", int(key), changes) if changes else None
        return Projection(row, segments)
    if kind == "bot":
        for event in events:
            if event.type == BotEventType.START:
                changes |= {"status": BotStatus.RECORDING, "started_at": event.ts}
            elif event.type == BotEventType.STOP:
                changes |= {
                    "status": BotStatus.FINISHED,
                    "ended_at": event.ts,
                    "stop_reason": event.data.get("reason"),
                }
            elif event.type == BotEventType.ERROR:
                changes |= {
                    "status": BotStatus.FAILED,
                    "ended_at": event.ts,
                    "error": event.data.get("message"),
                }
        return Projection(RowUpdate("bots", int(key), changes) if changes else None)
    return Projection()


# -- deletion ---------------------------------------------------------------

#: Every table that keeps rows of one call, each keyed by a ``stream`` column
#: (with an index that starts with it): deleting a call (``RetentionStore``)
#: deletes its rows from each, in one transaction with the ``calls`` row (a
#: retention sweep does the same for an expired bot's stream). The
#: ``streams`` row is not here: it stays, closed, as the call's tombstone, so
#: that an append through a node's stale copy of the call is refused as ended
#: instead of starting a new stream. A feature that keeps per-call rows adds
#: its table here.
CALL_TABLES: tuple[str, ...] = ("events", "segments", "webhook_outbox", "alert_firings")


# -- the catalog ------------------------------------------------------------

#: The ``api_keys`` columns that make an ``ApiKey``, in the order of its fields.
KEY_COLUMNS = "id, org_id, user_id, prefix, scopes, name, created_at, revoked_at, kind, expires_at"
#: At most this many key ids per query of ``inactive_keys`` (SQLite caps a
#: statement's parameters; one statement stays small on either backend).
KEY_BATCH = 500
#: How long past its expiry a dashboard session's row is kept (a bot may name it
#: longer): adding a session purges those older, so the rows do not pile up.
SESSION_RETENTION_MS = 86_400_000


def scopes_text(scopes: Collection[str]) -> str:
    """Scopes as a ``scopes`` column holds them: a sorted comma list."""
    return ",".join(sorted(scopes))


def scopes_of(text: str) -> frozenset[str]:
    """The scopes of a ``scopes`` column."""
    return frozenset(text.split(",")) if text else frozenset()


def key_of(row: Iterable[Any]) -> ApiKey:
    """The ``ApiKey`` (key or session) of a row read with ``KEY_COLUMNS``."""
    key_id, org_id, user_id, prefix, scopes, name, created, revoked, kind, expires = row
    return ApiKey(
        key_id, org_id, user_id, prefix, scopes_of(scopes), name, created, revoked, kind, expires
    )


def key_lookup(id_or_prefix: str) -> tuple[str, int | str]:
    """The column and value that find a key named by id or by prefix."""
    key_id = parse_int(id_or_prefix, 1)
    return ("prefix", id_or_prefix) if key_id is None else ("id", key_id)


def list_cursor(cursor: str | None) -> int | None:
    """The call id a page of calls continues below (None: the first page)."""
    if cursor is None:
        return None
    before = parse_int(cursor, 1)
    if before is None:
        raise InvalidRequest("Invalid cursor")
    return before


def status_filter(status: str | Collection[str] | None) -> list[str] | None:
    """The statuses a list of calls keeps, in a stable order (None: any status)."""
    if status is None:
        return None
    return [status] if isinstance(status, str) else sorted(set(status))


def linked_outcome(call: Call, event: NewEvent) -> str | None:
    """The outcome a status event gives the call's campaign contact, if any:
    a terminal status completes it (completed: success, anything else: failed)."""
    if not event.closes or call.campaign_contact_id is None or call.campaign_id is None:
        return None
    return ContactStatus.SUCCESS if event.data["status"] == "completed" else ContactStatus.FAILED


def linked_duration(call: Call, ts: int) -> float:
    """Seconds from the call's start to ``ts``: a linked contact's duration."""
    return round((ts - call.started_at) / 1000, 3)


# -- campaigns --------------------------------------------------------------


def campaign_stream(campaign_id: int) -> str:
    return f"campaign:{campaign_id}"


def counters_of(rows: Iterable[tuple[str, int, float]]) -> Counters:
    """Counters from ``(status, contacts, total duration)`` per contact status."""
    counts = dict.fromkeys(ContactStatus, 0)
    duration = 0.0
    for status, count, total in rows:
        counts[ContactStatus(status)] = count
        duration += total
    return Counters(
        total=sum(counts.values()),
        pending=counts[ContactStatus.PENDING],
        in_progress=counts[ContactStatus.IN_PROGRESS],
        successful=counts[ContactStatus.SUCCESS],
        failed=counts[ContactStatus.FAILED],
        skipped=counts[ContactStatus.SKIPPED],
        total_duration=duration,
    )


def check_running(campaign_id: int, status: str | None) -> None:
    """Changes to contacts need a running campaign (``status`` None: not found)."""
    if status is None:
        raise NotFound(f"Campaign {campaign_id} not found")
    if status != CampaignStatus.RUNNING:
        raise Conflict(f"Campaign {campaign_id} is {status}, not running")


def check_open(campaign_id: int, status: str | None) -> None:
    """Contacts can be added until the campaign completes."""
    if status is None:
        raise NotFound(f"Campaign {campaign_id} not found")
    if status == CampaignStatus.COMPLETED:
        raise Conflict(f"Campaign {campaign_id} has completed")


def check_startable(campaign_id: int, campaign: Campaign | None, contacts: int) -> None:
    """draft -> running, with at least one contact."""
    if campaign is None:
        raise NotFound(f"Campaign {campaign_id} not found")
    if campaign.status != CampaignStatus.DRAFT:
        raise Conflict(f"Campaign {campaign_id} is already {campaign.status}")
    if contacts == 0:
        raise InvalidRequest("A campaign needs at least one contact to start")


def check_takeable(call: Call, found: tuple[str, int, int, str] | None) -> tuple[int, int]:
    """A call may take a pending contact of a running campaign of its organization.

    ``found`` is the contact's status, campaign id, organization and campaign
    status (None: no such contact). Returns the contact's and campaign's ids.
    """
    contact_id = call.campaign_contact_id
    assert contact_id is not None
    if found is None or found[2] != call.org_id:
        raise NotFound(f"Campaign contact {contact_id} not found")
    status, campaign_id, _, campaign_status = found
    check_running(campaign_id, campaign_status)
    if status != ContactStatus.PENDING:
        raise Conflict(f"Campaign contact {contact_id} is {status}, not pending")
    return contact_id, campaign_id


def check_outcome(outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise InvalidRequest(f"outcome must be one of {', '.join(sorted(OUTCOMES))}")


def check_recordable(contact_id: int, contact_status: str | None) -> None:
    """An outcome is recorded once (``contact_status`` None: no such contact)."""
    if contact_status is None:
        raise NotFound(f"Contact {contact_id} not found")
    if contact_status in OUTCOMES:
        raise Conflict(f"Contact {contact_id} already has the outcome {contact_status}")


def taken_event(contact: Contact, ts: int) -> NewEvent:
    """The ``contact_update`` of a contact a call has just taken."""
    return NewEvent(EventType.CONTACT_UPDATE, contact.update_data(), ts=ts)


def outcome_events(contact: Contact, counters: Counters, ts: int) -> tuple[list[NewEvent], bool]:
    """The events after ``contact`` got its outcome (``counters`` include it):
    ``contact_update``, ``contact_completed`` and, when none is left pending
    or in progress, a last ``progress`` and ``campaign_completed``, which ends
    the stream. The flag says whether the campaign completes."""
    update = contact.update_data()
    events = [
        NewEvent(EventType.CONTACT_UPDATE, update, ts=ts),
        NewEvent(
            EventType.CONTACT_COMPLETED,
            {**contact.completed_data(), "counters": counters.progress()},
            ts=ts,
        ),
    ]
    if not counters.done:
        return events, False
    # The last change's progress cannot wait for the coalescing interval: the
    # stream ends here. It goes out now, before the completion.
    final = replace(counters, latest_contact=update)
    events.append(NewEvent(EventType.PROGRESS, final.progress(), ts=ts))
    events.append(NewEvent(EventType.CAMPAIGN_COMPLETED, final.summary(), closes=True, ts=ts))
    return events, True


def speech_columns(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a speech-settings change sets, in a fixed order; ``ValueError``
    for a name that is not a settings field (names go into SQL, values never do)."""
    unknown = set(changes) - set(SPEECH_FIELDS)
    if unknown:
        raise ValueError(f"not speech settings fields: {sorted(unknown)}")
    return {name: changes[name] for name in SPEECH_FIELDS if name in changes}
