"""An ``alert`` event on the wire (pure): the live transcript sends it in its own
shape, never as a status; the organization event stream routes it to the
``alert`` topic; the Python client parses it (and skips types it does not
know), and ``tail`` prints it."""

from __future__ import annotations

import io

import orjson

from scribeline.client.events import AlertEvent, parse_call_message
from scribeline.events import EventType, StoredEvent
from scribeline.protocols import live_transcript, org_events
from scribeline.tail import PlainOutput

DATA = {
    "rule": {"id": 7, "name": "Refunds", "kind": "keyword"},
    "segment_seq": 4,
    "segment_id": "s1",
    "speaker": "user",
    "matched": "refund",
    "number": 1,
}
ALERT = StoredEvent("call:1", 5, EventType.ALERT, 1_768_824_005_123, DATA, False, "e")


def test_the_live_transcript_sends_an_alert_as_an_alert() -> None:
    message = orjson.loads(live_transcript.encode_event("CA1", ALERT))
    assert message == {
        "type": "alert",
        "call_sid": "CA1",
        "timestamp": "2026-01-19T12:00:05.123Z",
        "seq": 5,
        "data": DATA,
    }


def test_the_org_stream_routes_alerts_to_their_topic() -> None:
    assert "alert" in org_events.TOPICS
    meta = {"call_sid": "CA1", "assistant_id": 3}
    assert org_events.topic_of(EventType.ALERT, meta) == "alert"
    encoded = org_events.encode_event(ALERT, meta)
    assert encoded is not None and orjson.loads(encoded)["type"] == "alert"
    subscribe = org_events.decode_client(b'{"action":"subscribe","topic":"alert","filter":"*"}')
    assert subscribe == org_events.Subscription(True, "alert", "*")


def test_the_client_parses_alerts_and_skips_unknown_types() -> None:
    message = orjson.loads(live_transcript.encode_event("CA1", ALERT))
    event = parse_call_message(message)
    assert isinstance(event, AlertEvent)
    assert (event.call_sid, event.seq, event.rule_name, event.data) == ("CA1", 5, "Refunds", DATA)
    assert parse_call_message({**message, "type": "something_new"}) is None


def test_tail_prints_an_alert_as_a_line() -> None:
    out = io.StringIO()
    event = parse_call_message(orjson.loads(live_transcript.encode_event("CA1", ALERT)))
    assert event is not None
    PlainOutput(out).show(event)
    assert out.getvalue() == "— alert: Refunds\n"
