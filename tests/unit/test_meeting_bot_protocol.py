"""The meeting-bot wire format: actions in, events out, producer event validation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from scribeline.events import StoredEvent
from scribeline.ingest.bot_models import CreateBot, event_data
from scribeline.protocols import meeting_bot as proto


def test_valid_actions_decode() -> None:
    """chat-message with content and stop are the two actions."""
    chat = proto.decode_action('{"action":"chat-message","data":{"content":"Welcome!"}}')
    assert chat == proto.ChatAction("Welcome!")
    assert proto.decode_action(b'{"action":"stop"}') is proto.STOP_ACTION


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1]",
        '{"action":"chat-message"}',
        '{"action":"chat-message","data":{}}',
        '{"action":"chat-message","data":{"content":"  "}}',
        '{"action":"chat-message","data":{"content":7}}',
        '{"action":"chat-message","data":"hello"}',
        json.dumps({"action": "chat-message", "data": {"content": "x" * 2001}}),
        '{"action":"leave"}',
        '{"type":"stop"}',
    ],
)
def test_actions_without_their_data_are_not_performed(text: str) -> None:
    """Anything that is not a complete action decodes to nothing to perform."""
    assert proto.decode_action(text) is None


def test_actions_reach_the_producer_in_their_documented_shape() -> None:
    """The producer gets the action as a subscriber wrote it (normalized)."""
    assert json.loads(proto.encode_action(proto.ChatAction("Hi"))) == {
        "action": "chat-message",
        "data": {"content": "Hi"},
    }
    assert json.loads(proto.encode_action(proto.STOP_ACTION)) == {"action": "stop"}


def _event(kind: str, data: dict[str, Any], closes: bool = False) -> StoredEvent:
    return StoredEvent("bot:1", 4, kind, 1_760_000_000_000, data, closes)


def test_events_render_as_type_and_data() -> None:
    """Subscribers see type and data only; the org stream adds the bot id and seq."""
    event = _event("ts", {"transcript": "Hi", "start": 0.0, "end": 1.0})
    assert json.loads(proto.encode_event(event)) == {"type": "ts", "data": event.data}
    assert json.loads(proto.encode_org_event("b-1", event)) == {
        "type": "ts",
        "bot_id": "b-1",
        "seq": 4,
        "data": event.data,
    }
    assert json.loads(proto.PING) == {"type": "ping", "data": {}}


def test_the_producer_is_told_only_of_the_closing_event() -> None:
    """Of its own stream, the producer's format renders just the event that ends it."""
    assert proto.encode_terminal(_event("ts", {"transcript": "x"})) is None
    stop = _event("stop", {}, closes=True)
    assert json.loads(proto.encode_terminal(stop) or b"") == {"type": "stop", "data": {}}


def test_producer_event_data_is_normalized() -> None:
    """Optional fields become null, except a stop without a reason, which stays empty."""
    assert event_data("ts", {"transcript": "Hi", "start": 1, "end": 2}) == {
        "transcript": "Hi",
        "start": 1.0,
        "end": 2.0,
        "speaker": None,
        "speaker_name": None,
    }
    assert event_data("stop", None) == {}
    assert event_data("stop", {"reason": "meeting_ended"}) == {"reason": "meeting_ended"}
    assert event_data("participant-tracked", {"participantId": "p1"}) == {
        "participantId": "p1",
        "participantName": None,
    }
    assert event_data("chat-message", {"username": "Bot", "content": "Hi"}) == {
        "username": "Bot",
        "content": "Hi",
        "user_avatar": None,
    }


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("ts", {"transcript": "x", "start": 2, "end": 1}),
        ("ts", {"transcript": "x", "start": -1, "end": 1}),
        ("ts", {"transcript": "x", "start": 0, "end": 1, "speaker": -1}),
        ("ts", {"transcript": "x", "start": 0, "end": 1, "words": []}),
        ("start", {"anything": 1}),
        ("chat-message", {"username": "u", "content": ""}),
        ("participant-tracked", {"participantId": ""}),
        ("error", {}),
        ("stop", {"reason": ""}),
    ],
)
def test_bad_producer_events_are_refused(kind: str, data: dict[str, Any]) -> None:
    """Out-of-range, missing and unknown fields are validation errors."""
    with pytest.raises(ValidationError):
        event_data(kind, data)


@pytest.mark.parametrize(
    "body",
    [
        {"meeting_url": "ftp://x.example/a", "bot_name": "b", "transcription_model": "realtime"},
        {"meeting_url": "not a url", "bot_name": "b", "transcription_model": "realtime"},
        {"meeting_url": "https://x.example/", "bot_name": "", "transcription_model": "realtime"},
        {"meeting_url": "https://x.example/", "bot_name": "b"},
        {"meeting_url": "https://x.example/", "bot_name": "b", "transcription_model": "r", "x": 1},
    ],
)
def test_bad_bot_requests_are_refused(body: dict[str, Any]) -> None:
    """A bot needs an http(s) meeting URL, a name and a model, and nothing unknown."""
    with pytest.raises(ValidationError):
        CreateBot.model_validate(body)
