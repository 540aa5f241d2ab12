"""The organization event stream's pure rules: actions, filters, shapes."""

from __future__ import annotations

import orjson
import pytest

from scribeline.errors import InvalidMessage
from scribeline.events import EventType, StoredEvent
from scribeline.protocols import campaign_progress, org_events


def test_actions_parse_with_a_default_filter() -> None:
    """subscribe/unsubscribe carry topic and filter; the filter defaults to *."""
    sub = org_events.decode_client('{"action":"subscribe","topic":"transcription"}')
    assert sub == org_events.Subscription(True, "transcription", "*")
    unsub = org_events.decode_client(
        '{"action":"unsubscribe","topic":"call_status","filter":"assistant:12"}'
    )
    assert unsub == org_events.Subscription(False, "call_status", "assistant:12")
    assert isinstance(org_events.decode_client('{"type":"ping"}'), org_events.Ping)


@pytest.mark.parametrize(
    "text",
    [
        "nope",
        '{"action":"publish","topic":"transcription"}',
        '{"action":"subscribe","topic":"meeting"}',
        '{"action":"subscribe","topic":"campaign","filter":"assistant:x"}',
        '{"action":"subscribe","topic":"campaign","filter":"bad sid!"}',
        '{"action":"subscribe","topic":"campaign","filter":7}',
    ],
)
def test_bad_actions_are_invalid_messages(text: str) -> None:
    """Unknown actions, topics and malformed filters are refused."""
    with pytest.raises(InvalidMessage):
        org_events.decode_client(text)


def test_filters_match_by_call_and_assistant() -> None:
    """* matches all; a SID matches that call; assistant:<id> matches that assistant."""
    meta = {"call_sid": "CA1", "assistant_id": 7}
    assert org_events.matches("*", meta)
    assert org_events.matches("CA1", meta) and not org_events.matches("CA2", meta)
    assert org_events.matches("assistant:7", meta)
    assert not org_events.matches("assistant:70", meta)
    assert not org_events.matches("CA1", {"campaign_id": 3, "assistant_id": 7})


def test_event_types_map_to_topics() -> None:
    """Transcripts, statuses and campaign events each belong to their topic."""
    assert org_events.topic_of(EventType.TRANSCRIPT) == "transcription"
    assert org_events.topic_of(EventType.CALL_STATUS) == "call_status"
    assert org_events.topic_of(EventType.PROGRESS) == "campaign"
    assert org_events.topic_of("something-else") is None


def test_progress_mirrors_counters_at_the_top_level() -> None:
    """progress carries counters in data and, for the Burki SDK, at the top level."""
    counters = {"total_contacts": 4, "completed_contacts": 1, "success_rate": 100.0}
    message = orjson.loads(campaign_progress.encode_progress(9, counters, 0))
    assert message["data"] == counters
    assert all(message[k] == v for k, v in counters.items())
    assert message["type"] == "progress" and message["campaign_id"] == 9


def test_contact_completed_hides_the_stored_counters() -> None:
    """A contact_completed message shows the contact, not the counters stored with it."""
    data = {"contact_id": 1, "outcome": "success", "counters": {"total_contacts": 1}}
    event = StoredEvent("campaign:9", 3, EventType.CONTACT_COMPLETED, 0, data)
    message = orjson.loads(campaign_progress.encode_event(9, event) or b"{}")
    assert message["data"] == {"contact_id": 1, "outcome": "success"}
