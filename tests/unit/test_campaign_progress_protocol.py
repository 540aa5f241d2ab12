"""The campaign progress wire format: canonical ``data`` plus the Burki SDK's top level."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from burki.models.realtime import (
    CampaignCompletedEvent,
    CampaignContactEvent,
    CampaignProgressEvent,
)
from burki.realtime.campaign_progress import CampaignProgressStream

from scribeline.domain import Contact, Counters
from scribeline.events import EventType, StoredEvent
from scribeline.protocols import campaign_progress, org_events


def _contact(status: str, duration: float | None, error: str | None = None) -> Contact:
    return Contact(7, 9, "+14155551234", "Ada", status, "CA7", duration, error)


def _render(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    event = StoredEvent("campaign:9", 4, event_type, 1_768_824_005_123, data)
    payload = campaign_progress.encode_event(9, event)
    assert payload is not None
    message: dict[str, Any] = orjson.loads(payload)
    return message


def _sdk(message: dict[str, Any]) -> Any:
    """What the published SDK (burki 0.1.2) makes of the message; raises as it would."""
    return CampaignProgressStream("ws://unused", "unused")._parse_event(message)


@pytest.mark.parametrize(
    ("status", "sdk_status"),
    [
        ("pending", "pending"),
        ("in_progress", "in_progress"),
        ("success", "completed"),
        ("failed", "failed"),
        ("skipped", "skipped"),
    ],
)
def test_contact_update_speaks_the_sdk_status_at_the_top_level(
    status: str, sdk_status: str
) -> None:
    """contact_update keeps our status in data and puts the SDK's name for it at the top."""
    data = _contact(status, None).update_data()
    message = _render(EventType.CONTACT_UPDATE, data)
    assert message["data"] == data and message["data"]["status"] == status
    assert message["status"] == sdk_status
    event = _sdk(message)
    assert isinstance(event, CampaignContactEvent) and event.status == sdk_status


@pytest.mark.parametrize(
    ("duration", "whole"), [(None, None), (0.0, 0), (12.4, 12), (12.5, 13), (125.987, 126)]
)
def test_contact_update_call_duration_is_whole_seconds(
    duration: float | None, whole: int | None
) -> None:
    """The SDK types call_duration int and rejects a fraction: the top level has whole
    seconds (data keeps the exact duration)."""
    data = _contact("failed", duration, "voicemail").update_data()
    message = _render(EventType.CONTACT_UPDATE, data)
    assert {k: message[k] for k in ("contact_id", "phone_number", "call_sid")} == {
        "contact_id": 7,
        "phone_number": "+14155551234",
        "call_sid": "CA7",
    }
    assert message["call_duration"] == whole and message["error_message"] == "voicemail"
    assert message["data"]["duration"] == duration
    assert message["type"] == "contact_update" and message["campaign_id"] == 9
    assert message["timestamp"] == "2026-01-19T12:00:05.123Z"
    event = _sdk(message)
    assert isinstance(event, CampaignContactEvent)
    assert (event.contact_id, event.call_duration, event.error_message) == (7, whole, "voicemail")


def test_progress_carries_the_latest_contact_at_the_top_level() -> None:
    """A progress event's latest_contact stays in data; the SDK's contact_* fields and the
    counters (not the nested contact) are mirrored at the top level."""
    latest = _contact("success", 30.2).update_data()
    counters = Counters(4, 1, 1, 1, 1, 0, 42.0, latest).progress()
    assert counters[campaign_progress.LATEST_CONTACT] == latest
    message = orjson.loads(campaign_progress.encode_progress(9, counters, 0))
    assert message["data"] == counters
    assert "latest_contact" not in message
    assert all(message[k] == v for k, v in counters.items() if k != "latest_contact")
    assert message["contact_id"] == 7 and message["contact_phone"] == "+14155551234"
    assert message["contact_status"] == "completed" and message["contact_error"] is None
    event = _sdk(message)
    assert isinstance(event, CampaignProgressEvent)
    assert (event.contact_id, event.contact_status, event.completed_contacts) == (
        7,
        "completed",
        2,
    )


def test_progress_without_a_contact_change_has_no_contact_fields() -> None:
    """Before any contact changed, progress has no latest_contact and no contact_* fields."""
    counters = Counters(2, 2, 0, 0, 0, 0, 0.0).progress()
    message = orjson.loads(campaign_progress.encode_progress(9, counters, 0))
    assert message["data"] == counters and "latest_contact" not in counters
    assert not {"contact_id", "contact_phone", "contact_status", "contact_error"} & set(message)
    event = _sdk(message)
    assert isinstance(event, CampaignProgressEvent) and event.contact_id is None


def test_stored_progress_renders_like_the_snapshot() -> None:
    """A stored progress event renders the same fields as the snapshot sent on connect."""
    counters = Counters(1, 0, 1, 0, 0, 0, 0.0, _contact("in_progress", None).update_data())
    stored = _render(EventType.PROGRESS, counters.progress())
    snapshot = orjson.loads(campaign_progress.encode_progress(9, counters.progress(), 0))
    assert {k: v for k, v in stored.items() if k != "timestamp"} == {
        k: v for k, v in snapshot.items() if k != "timestamp"
    }
    assert stored["contact_status"] == "in_progress"


def test_campaign_completed_mirrors_the_summary_with_whole_seconds() -> None:
    """campaign_completed mirrors its counters at the top level, where the SDK reads them;
    total_duration there is whole seconds, data keeps milliseconds."""
    summary = Counters(5, 0, 0, 3, 1, 1, 125.6789).summary()
    message = _render(EventType.CAMPAIGN_COMPLETED, summary)
    assert message["data"] == summary and summary["total_duration"] == 125.679
    for key in ("total_contacts", "completed_contacts", "successful_contacts", "failed_contacts"):
        assert message[key] == summary[key], key
    assert message["success_rate"] == 60.0 and message["total_duration"] == 126
    event = _sdk(message)
    assert isinstance(event, CampaignCompletedEvent)
    assert (event.total_contacts, event.completed_contacts, event.failed_contacts) == (5, 5, 1)
    assert (event.success_rate, event.total_duration) == (60.0, 126)


def test_whole_seconds_stays_a_json_integer() -> None:
    """An absurd or negative duration still renders as an integer every decoder accepts."""
    assert campaign_progress.whole_seconds(1e300) == 2**53
    assert campaign_progress.whole_seconds(-3.0) == 0
    orjson.dumps(campaign_progress.whole_seconds(1e300))


def test_contact_update_is_on_the_campaign_topic() -> None:
    """The organization event stream routes contact_update to the campaign topic."""
    assert org_events.topic_of(EventType.CONTACT_UPDATE, {"campaign_id": 9}) == "campaign"
    data = _contact("in_progress", None).update_data()
    event = StoredEvent("campaign:9", 2, EventType.CONTACT_UPDATE, 0, data)
    message = orjson.loads(org_events.encode_event(event, {"campaign_id": 9}) or b"{}")
    assert message["type"] == "contact_update" and message["status"] == "in_progress"
