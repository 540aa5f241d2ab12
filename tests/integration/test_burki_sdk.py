"""The published Burki Python SDK (burki 0.1.2) against a real server.

The SDK reads fields at the top level of the campaign progress messages and
builds pydantic models from them (PROTOCOL section 2); these tests drive its
own streams, ``BurkiClient(...).realtime.campaign_progress(...)`` and
``.live_transcript(...)``, and check what it yields.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from burki import BurkiClient
from burki.models.realtime import (
    CallStatusEvent,
    CampaignCompletedEvent,
    CampaignContactEvent,
    CampaignProgressEvent,
    TranscriptEvent,
)

from .helpers import RECV_TIMEOUT, Api, ServerProcess, Tenant, new_sid, transcript

#: Long enough for a campaign of three contacts and the 1 s progress interval.
STREAM_TIMEOUT = 30.0


@pytest.fixture
async def sdk(server: ServerProcess, tenant_a: Tenant) -> AsyncIterator[BurkiClient]:
    """The SDK's client with tenant A's read key, pointed at the shared server."""
    async with BurkiClient(api_key=tenant_a.read, base_url=server.base_url) as client:
        yield client


async def _post(api: Api, path: str, body: Any = None) -> Any:
    resp = await (
        api.request("POST", path) if body is None else api.request("POST", path, json_body=body)
    )
    assert resp.status in (200, 201), f"POST {path}: {resp.status} {resp.text}"
    return resp.body


async def _running_campaign(api: Api, phones: list[str]) -> tuple[int, list[int]]:
    campaign = await _post(api, "/v1/campaigns", {"name": "SDK check"})
    added = await _post(
        api,
        f"/v1/campaigns/{campaign['id']}/contacts",
        [{"phone_number": p, "name": f"Contact {n}"} for n, p in enumerate(phones)],
    )
    await _post(api, f"/v1/campaigns/{campaign['id']}/start")
    return campaign["id"], [c["id"] for c in added["contacts"]]


async def _collect(events: AsyncIterator[Any]) -> list[Any]:
    """Everything the SDK yields until the server closes the stream."""
    async with asyncio.timeout(STREAM_TIMEOUT):
        return [event async for event in events]


def _latest_before(yielded: list[Any]) -> list[tuple[CampaignProgressEvent, Any]]:
    """Each progress event with the contact_update the SDK yielded last before it."""
    latest: CampaignContactEvent | None = None
    pairs = []
    for event in yielded:
        if isinstance(event, CampaignContactEvent):
            latest = event
        elif isinstance(event, CampaignProgressEvent):
            pairs.append((event, latest))
    return pairs


async def test_sdk_campaign_progress_sees_contacts_and_real_counters(
    sdk: BurkiClient, api_a: Api
) -> None:
    """Through the SDK: contact_update for each change (a linked call placed and completed,
    an outcome recorded, a skip) with SDK statuses and whole-second durations, progress naming
    the latest contact, and campaign_completed with the real, non-zero counters."""
    phones = ["+14155557001", "+14155557002", "+14155557003"]
    cid, (called, recorded, skipped) = await _running_campaign(api_a, phones)
    sid = new_sid()

    async with sdk.realtime.campaign_progress(cid) as stream:
        events = stream.__aiter__()
        # The stream is live only: drive the campaign once the snapshot is in.
        async with asyncio.timeout(RECV_TIMEOUT):
            snapshot = await anext(events)
        assert isinstance(snapshot, CampaignProgressEvent), snapshot
        assert (snapshot.total_contacts, snapshot.pending_contacts) == (3, 3)
        assert snapshot.contact_id is None

        await api_a.create_call(sid, campaign_contact_id=called, call_type="outbound")
        await api_a.post_transcript(sid, transcript("Hi, is this a good time?"))
        await api_a.post_status(sid, "completed")
        await _post(
            api_a,
            f"/v1/campaigns/{cid}/contacts/{recorded}/outcome",
            {"outcome": "failed", "duration": 42.7, "error": "voicemail"},
        )
        await _post(
            api_a, f"/v1/campaigns/{cid}/contacts/{skipped}/outcome", {"outcome": "skipped"}
        )
        yielded = await _collect(events)

    updates = [e for e in yielded if isinstance(e, CampaignContactEvent)]
    assert [(e.contact_id, e.status) for e in updates] == [
        (called, "in_progress"),
        (called, "completed"),
        (recorded, "failed"),
        (skipped, "skipped"),
    ]
    assert all(e.campaign_id == cid for e in yielded)
    assert [e.phone_number for e in updates] == [phones[0], phones[0], phones[1], phones[2]]
    assert [e.call_sid for e in updates] == [sid, sid, None, None]
    assert updates[0].call_duration is None
    assert isinstance(updates[1].call_duration, int) and updates[1].call_duration >= 0
    assert (updates[2].call_duration, updates[2].error_message) == (43, "voicemail")
    assert (updates[3].call_duration, updates[3].error_message) == (None, None)

    # Each progress names the latest contact change before it, as the SDK reads it.
    pairs = _latest_before(yielded)
    assert pairs, "no progress event"
    for progress, latest in pairs:
        if latest is None:
            assert progress.contact_id is None, progress
        else:
            assert (progress.contact_id, progress.contact_phone, progress.contact_status) == (
                latest.contact_id,
                latest.phone_number,
                latest.status,
            ), progress
            assert progress.contact_error == latest.error_message, progress
    final_progress, _ = pairs[-1]
    assert (final_progress.contact_id, final_progress.contact_status) == (skipped, "skipped")
    assert (final_progress.completed_contacts, final_progress.pending_contacts) == (3, 0)
    assert final_progress.completion_percentage == 100.0

    done = yielded[-1]
    assert isinstance(done, CampaignCompletedEvent), done
    assert (done.total_contacts, done.completed_contacts, done.failed_contacts) == (3, 3, 1)
    assert done.success_rate == 33.3
    contacts = (await api_a.request("GET", f"/v1/campaigns/{cid}/contacts")).body["contacts"]
    total = sum(c["duration"] or 0 for c in contacts)
    assert done.total_duration == int(total + 0.5) and done.total_duration >= 43

    # A later visitor gets the snapshot (with the latest contact) and the completion.
    async with sdk.realtime.campaign_progress(cid) as stream:
        again = await _collect(stream.__aiter__())
    assert [type(e) for e in again] == [CampaignProgressEvent, CampaignCompletedEvent]
    assert (again[0].contact_id, again[0].contact_status) == (skipped, "skipped")
    assert again[0].completed_contacts == 3
    assert again[1].model_dump(exclude={"timestamp"}) == done.model_dump(exclude={"timestamp"})


async def test_sdk_live_transcript_yields_transcripts_and_statuses(
    sdk: BurkiClient, api_a: Api
) -> None:
    """Through the SDK: the status snapshot, history, live transcripts and the final status,
    then the stream ends when the server closes it."""
    sid = new_sid()
    await api_a.create_call(sid)
    await api_a.post_transcript(sid, transcript("Hello, how can I help you today?"))

    async with sdk.realtime.live_transcript(sid) as stream:
        events = stream.__aiter__()
        async with asyncio.timeout(RECV_TIMEOUT):
            snapshot = await anext(events)
        assert isinstance(snapshot, CallStatusEvent), snapshot
        await api_a.post_transcript(
            sid,
            transcript(
                "I'd like to change my plan.",
                speaker="user",
                confidence=0.88,
                segment_start=8.0,
                segment_end=9.5,
            ),
        )
        await api_a.post_status(sid, "completed")
        yielded = await _collect(events)

    assert (snapshot.call_sid, snapshot.status) == (sid, "in-progress")
    assert snapshot.metadata["customer_phone_number"] == "+0987654321"
    assert [type(e) for e in yielded] == [
        CallStatusEvent,  # seq 1, the call's initial status, from history
        TranscriptEvent,
        TranscriptEvent,
        CallStatusEvent,
    ]
    assert all(e.call_sid == sid for e in yielded)
    first, second = yielded[1], yielded[2]
    assert (first.content, first.speaker, first.confidence) == (
        "Hello, how can I help you today?",
        "assistant",
        0.95,
    )
    assert (first.segment_start, first.segment_end, first.is_final) == (5.2, 7.1, True)
    assert (second.content, second.speaker, second.confidence) == (
        "I'd like to change my plan.",
        "user",
        0.88,
    )
    assert (second.segment_start, second.segment_end) == (8.0, 9.5)
    assert [e.status for e in yielded if isinstance(e, CallStatusEvent)] == [
        "in-progress",
        "completed",
    ]
    assert "ended_at" in yielded[-1].metadata
