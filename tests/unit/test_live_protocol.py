"""The live-transcript wire format renders and parses exactly as PROTOCOL.md shows."""

from __future__ import annotations

import orjson
import pytest

from scribeline.domain import Call
from scribeline.errors import InvalidMessage, NotFound
from scribeline.events import EventType, StoredEvent, format_ms
from scribeline.protocols import live_transcript as proto
from scribeline.protocols.frames import PING_FRAME, text_frame

CALL = Call(1, 1, 7, "CA1", "in-progress", "+1555", "+1666", "inbound", 1_768_824_005_123, None)


def test_timestamps_are_iso_utc_with_milliseconds_and_z() -> None:
    """format_ms gives the protocol's timestamp shape."""
    assert format_ms(1_768_824_005_123) == "2026-01-19T12:00:05.123Z"
    assert format_ms(1_768_824_005_000) == "2026-01-19T12:00:05.000Z"


def test_transcript_event_shape() -> None:
    """A stored transcript renders with seq, data and created_at."""
    data = {
        "content": "Hello",
        "speaker": "assistant",
        "is_final": True,
        "confidence": 0.95,
        "segment_start": 5.2,
        "segment_end": 7.1,
        "segment_id": "seg_9",
    }
    event = StoredEvent("call:1", 17, EventType.TRANSCRIPT, 1_768_824_005_123, data)
    message = orjson.loads(proto.encode_event("CA1", event))
    assert message == {
        "type": "transcript",
        "call_sid": "CA1",
        "timestamp": "2026-01-19T12:00:05.123Z",
        "seq": 17,
        "data": {**data, "created_at": "2026-01-19T12:00:05.123Z"},
    }


def test_status_event_and_snapshot_shapes() -> None:
    """Stored status events carry seq; the snapshot does not."""
    data = {"status": "completed", "metadata": {"assistant_id": 7}}
    event = StoredEvent("call:1", 18, EventType.CALL_STATUS, 0, data, closes=True)
    message = orjson.loads(proto.encode_event("CA1", event))
    assert message["type"] == "call_status"
    assert message["seq"] == 18
    assert message["status"] == "completed"
    snapshot = orjson.loads(proto.encode_status_snapshot(CALL, 0))
    assert "seq" not in snapshot
    assert snapshot["status"] == "in-progress"
    assert snapshot["metadata"]["customer_phone_number"] == "+1666"
    assert snapshot["metadata"]["assistant_id"] == 7


def test_error_shape() -> None:
    """Errors carry call_sid, timestamp, error code and message."""
    message = orjson.loads(proto.encode_error("CA1", NotFound("Call CA1 not found"), 0))
    assert message == {
        "type": "error",
        "call_sid": "CA1",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "error": "not_found",
        "message": "Call CA1 not found",
    }


@pytest.mark.parametrize(
    ("text", "command"),
    [('{"type":"ping"}', proto.Ping()), ('{"type":"request_status"}', proto.RequestStatus())],
)
def test_client_commands(text: str, command: object) -> None:
    """ping and request_status are the two client commands."""
    assert proto.decode_client(text) == command


@pytest.mark.parametrize("text", ["not json", "[]", '{"type":"subscribe"}', '{"kind":"ping"}', "1"])
def test_anything_else_is_an_invalid_message(text: str) -> None:
    """Bad JSON and unknown types raise InvalidMessage, which keeps the connection."""
    with pytest.raises(InvalidMessage) as info:
        proto.decode_client(text)
    assert info.value.keeps_connection


def test_frames_are_unmasked_and_complete() -> None:
    """Pre-built frames are final, unmasked text frames with the right length encoding."""
    assert text_frame(b"hi") == b"\x81\x02hi"
    big = text_frame(b"x" * 300)
    assert big[:4] == b"\x81\x7e\x01\x2c" and len(big) == 304
    assert PING_FRAME == b"\x89\x00"
