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
        '{"action":"subscribe","topic":"meetings"}',
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
    """Transcripts, statuses and campaign events each belong to their topic; every
    event of a bot's stream to ``meeting``, whatever its type."""
    call = {"call_sid": "CA1", "assistant_id": 7}
    assert org_events.topic_of(EventType.TRANSCRIPT, call) == "transcription"
    assert org_events.topic_of(EventType.CALL_STATUS, call) == "call_status"
    assert org_events.topic_of(EventType.PROGRESS, {"campaign_id": 3}) == "campaign"
    assert org_events.topic_of("something-else", call) is None
    assert org_events.topic_of("ts", {"bot_id": "b-1"}) == "meeting"
    assert org_events.topic_of("error", {"bot_id": "b-1"}) == "meeting"
    assert org_events.topic_of("error", call) is None


def test_bot_events_match_star_and_their_bot_id() -> None:
    """A meeting event passes ``*`` and its own bot's id, and no other filter."""
    meta = {"bot_id": "5f0c6c1e-0000-4000-8000-000000000001"}
    assert org_events.matches("*", meta)
    assert org_events.matches("5f0c6c1e-0000-4000-8000-000000000001", meta)
    assert not org_events.matches("5f0c6c1e-0000-4000-8000-000000000002", meta)
    assert not org_events.matches("assistant:1", meta)


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
