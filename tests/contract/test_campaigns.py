"""The CampaignStore contract: counters, contact lifecycle, exactly one completion."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from scribeline.domain import Call, Campaign
from scribeline.errors import Conflict, InvalidRequest, NotFound
from scribeline.events import EventType, NewEvent
from scribeline.storage import Storage


async def _running(storage: Storage, contacts: int) -> tuple[Campaign, list[int]]:
    org = await storage.create_org("acme")
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None
    campaign = await storage.create_campaign(org.id, assistant.id, "c")
    added = await storage.add_contacts(
        campaign.id, [(f"+1555{n:04d}", None) for n in range(contacts)]
    )
    return await storage.start_campaign(campaign.id), [c.id for c in added]


def _linked(org_id: int, assistant_id: int, sid: str, contact_id: int) -> Call:
    """A draft outbound call placed to a campaign contact."""
    return Call(
        0,
        org_id,
        assistant_id,
        sid,
        "in-progress",
        None,
        None,
        "outbound",
        1,
        None,
        None,
        contact_id,
    )


def _status(value: str) -> NewEvent:
    terminal = value not in ("queued", "ringing", "in-progress")
    return NewEvent(EventType.CALL_STATUS, {"status": value, "metadata": {}}, closes=terminal)


async def test_counters_follow_every_change(storage: Storage) -> None:
    """Outcomes move counts between pending and completed; rates are computed from them."""
    campaign, ids = await _running(storage, 4)
    await storage.record_outcome(campaign.id, ids[0], "success", 10.0, None, None)
    await storage.record_outcome(campaign.id, ids[1], "failed", None, None, "busy")
    await storage.record_outcome(campaign.id, ids[2], "skipped", None, None, None)
    counters = await storage.counters(campaign.id)
    assert (counters.total, counters.pending, counters.completed) == (4, 1, 3)
    progress = counters.progress()
    assert progress["success_rate"] == 33.3 and progress["completion_percentage"] == 75.0


async def test_each_outcome_event_carries_its_counters_and_the_last_completes(
    storage: Storage,
) -> None:
    """An outcome appends contact_update then contact_completed (with counters); the last one
    also appends a progress that names that contact, and campaign_completed."""
    campaign, ids = await _running(storage, 2)
    _, first = await storage.record_outcome(campaign.id, ids[0], "success", 5.0, None, None)
    assert [e.type for e in first] == [EventType.CONTACT_UPDATE, EventType.CONTACT_COMPLETED]
    assert first[0].data == {
        "contact_id": ids[0],
        "phone_number": "+15550000",
        "name": None,
        "status": "success",
        "call_sid": None,
        "duration": 5.0,
        "error": None,
    }
    assert first[1].data["counters"]["completed_contacts"] == 1
    assert [e.seq for e in first] == [1, 2]
    _, last = await storage.record_outcome(campaign.id, ids[1], "failed", 2.0, None, "busy")
    assert [e.type for e in last] == [
        EventType.CONTACT_UPDATE,
        EventType.CONTACT_COMPLETED,
        EventType.PROGRESS,
        EventType.CAMPAIGN_COMPLETED,
    ]
    assert last[0].data["status"] == "failed" and last[0].data["error"] == "busy"
    assert last[2].data["completion_percentage"] == 100.0
    assert last[2].data["latest_contact"] == last[0].data
    assert last[3].closes and last[3].data["total_duration"] == 7.0
    assert "latest_contact" not in last[3].data
    assert await storage.append_progress(campaign.id) is None  # the stream has ended


async def test_concurrent_outcomes_complete_the_campaign_exactly_once(storage: Storage) -> None:
    """50 outcomes recorded at once: 50 contact_update events each right before its
    contact_completed, one campaign_completed, sane counters."""
    campaign, ids = await _running(storage, 50)
    results = await asyncio.gather(
        *(
            storage.record_outcome(campaign.id, cid, ("success", "failed")[n % 2], 1.0, None, None)
            for n, cid in enumerate(ids)
        )
    )
    events = [e for _, evs in results for e in evs]
    assert sum(e.type == EventType.CONTACT_COMPLETED for e in events) == 50
    assert sum(e.type == EventType.CONTACT_UPDATE for e in events) == 50
    assert sum(e.type == EventType.CAMPAIGN_COMPLETED for e in events) == 1
    for event in events:
        if event.type == EventType.CONTACT_COMPLETED:
            c = event.data["counters"]
            assert c["pending_contacts"] + c["completed_contacts"] == c["total_contacts"] == 50
    stored = await storage.read(campaign.stream)
    # Two events per contact, then the last progress and the completion.
    assert [e.seq for e in stored] == list(range(1, 103))
    for update, completed in itertools.pairwise(stored[:100]):
        if update.type == EventType.CONTACT_UPDATE:
            assert completed.type == EventType.CONTACT_COMPLETED
            assert completed.data["contact_id"] == update.data["contact_id"]
    assert [e.type for e in stored[-2:]] == [EventType.PROGRESS, EventType.CAMPAIGN_COMPLETED]
    done = await storage.get_campaign(campaign.org_id, campaign.id)
    assert done is not None and done.status == "completed"


async def test_lifecycle_rules(storage: Storage) -> None:
    """No start without contacts, no second start, no outcome twice, none before start."""
    org = await storage.create_org("acme")
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None
    empty = await storage.create_campaign(org.id, assistant.id, "empty")
    with pytest.raises(InvalidRequest):
        await storage.start_campaign(empty.id)
    (contact,) = await storage.add_contacts(empty.id, [("+15550000", "A")])
    with pytest.raises(Conflict):
        await storage.record_outcome(empty.id, contact.id, "success", None, None, None)
    await storage.start_campaign(empty.id)
    with pytest.raises(Conflict):
        await storage.start_campaign(empty.id)
    with pytest.raises(NotFound):
        await storage.record_outcome(empty.id, contact.id + 99, "success", None, None, None)
    await storage.record_outcome(empty.id, contact.id, "success", None, None, None)
    with pytest.raises(Conflict):
        await storage.add_contacts(empty.id, [("+15550001", None)])


async def test_a_linked_call_takes_and_completes_its_contact(storage: Storage) -> None:
    """Creating a linked call marks the contact in progress and returns the call's first event
    and the contact's contact_update; its terminal status completes the contact."""
    campaign, ids = await _running(storage, 2)
    draft = _linked(campaign.org_id, campaign.assistant_id, "CA1", ids[0])
    call, created = await storage.create_call(draft, _status("in-progress"))
    assert call.campaign_id == campaign.id
    assert [(e.stream, e.seq, e.type) for e in created] == [
        (call.stream, 1, EventType.CALL_STATUS),
        (campaign.stream, 1, EventType.CONTACT_UPDATE),
    ]
    taken = created[1].data
    assert taken["contact_id"] == ids[0] and taken["status"] == "in_progress"
    assert taken["call_sid"] == "CA1" and taken["duration"] is None
    assert await storage.read(campaign.stream) == [created[1]]
    assert (await storage.counters(campaign.id)).in_progress == 1
    with pytest.raises(Conflict):  # the contact is taken
        await storage.create_call(
            _linked(campaign.org_id, campaign.assistant_id, "CA2", ids[0]),
            _status("in-progress"),
        )
    events = await storage.set_call_status(call, _status("no-answer"))
    assert [e.type for e in events] == [
        EventType.CALL_STATUS,
        EventType.CONTACT_UPDATE,
        EventType.CONTACT_COMPLETED,
    ]
    assert [e.stream for e in events[1:]] == [campaign.stream] * 2
    assert events[1].data["status"] == "failed" and events[1].data["call_sid"] == "CA1"
    assert isinstance(events[1].data["duration"], float) and events[1].data["duration"] >= 0
    assert events[2].data["outcome"] == "failed" and events[2].data["call_sid"] == "CA1"


async def test_a_refused_linked_call_changes_nothing(storage: Storage) -> None:
    """A linked call whose SID already exists is refused after taking its contact: the
    contact stays pending and no contact_update is stored (one transaction)."""
    campaign, ids = await _running(storage, 2)
    await storage.create_call(
        _linked(campaign.org_id, campaign.assistant_id, "CA1", ids[0]), _status("in-progress")
    )
    head = await storage.head(campaign.stream)
    with pytest.raises(Conflict):
        await storage.create_call(
            _linked(campaign.org_id, campaign.assistant_id, "CA1", ids[1]),
            _status("in-progress"),
        )
    assert await storage.head(campaign.stream) == head
    assert [c.status for c in await storage.list_contacts(campaign.id)] == [
        "in_progress",
        "pending",
    ]


async def test_progress_carries_the_latest_contact_change(storage: Storage) -> None:
    """Progress events and the stream's snapshot carry the latest contact_update's payload
    (none before the first change); the counters REST shows do not."""
    campaign, ids = await _running(storage, 3)
    progress = await storage.append_progress(campaign.id)
    assert progress is not None and "latest_contact" not in progress.data
    _, snapshot = await storage.campaign_snapshot(campaign.id)
    assert snapshot.latest_contact is None

    draft = _linked(campaign.org_id, campaign.assistant_id, "CA1", ids[0])
    _, (_, taken) = await storage.create_call(draft, _status("in-progress"))
    progress = await storage.append_progress(campaign.id)
    assert progress is not None and progress.data["latest_contact"] == taken.data
    assert progress.data["in_progress_contacts"] == 1

    _, events = await storage.record_outcome(campaign.id, ids[2], "skipped", None, None, "later")
    progress = await storage.append_progress(campaign.id)
    assert progress is not None and progress.data["latest_contact"] == events[0].data
    assert progress.data["latest_contact"]["status"] == "skipped"
    head, snapshot = await storage.campaign_snapshot(campaign.id)
    assert head.seq == progress.seq and snapshot.latest_contact == events[0].data
    assert snapshot.progress() == progress.data
    assert "latest_contact" not in (await storage.counters(campaign.id)).progress()


async def test_an_explicit_outcome_is_not_overwritten_by_the_call_ending(storage: Storage) -> None:
    """An outcome reported while the call runs stands when the call then completes."""
    campaign, ids = await _running(storage, 2)
    draft = _linked(campaign.org_id, campaign.assistant_id, "CA1", ids[0])
    call, _ = await storage.create_call(draft, _status("in-progress"))
    _, recorded = await storage.record_outcome(
        campaign.id, ids[0], "failed", None, None, "wrong person"
    )
    assert recorded[0].type == EventType.CONTACT_UPDATE
    assert recorded[0].data["status"] == "failed" and recorded[0].data["call_sid"] == "CA1"
    events = await storage.set_call_status(call, _status("completed"))
    assert [e.type for e in events] == [EventType.CALL_STATUS]
    (contact, *_) = await storage.list_contacts(campaign.id)
    assert contact.status == "failed" and contact.error == "wrong person"


async def test_another_organizations_contact_cannot_be_linked(storage: Storage) -> None:
    """A call of one organization cannot take a contact of another's campaign."""
    _, ids = await _running(storage, 1)
    other = await storage.create_org("other")
    assistant = await storage.get_assistant(other.id, None)
    assert assistant is not None
    draft = _linked(other.id, assistant.id, "CA1", ids[0])
    with pytest.raises(NotFound):
        await storage.create_call(draft, _status("in-progress"))
