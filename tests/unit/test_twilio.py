"""Twilio's request signature and the shapes of its Media Streams messages."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import ValidationError

from scribeline.speech.twilio import (
    Media,
    Start,
    decode_payload,
    signature_valid,
    signed_url,
    twilio_signature,
)

TOKEN = "12345678901234567890123456789012"


def test_signature_is_base64_hmac_sha1_of_the_url() -> None:
    url = "wss://scribe.example.com/v1/media-stream"
    expected = base64.b64encode(hmac.new(TOKEN.encode(), url.encode(), hashlib.sha1).digest())
    assert twilio_signature(TOKEN, url) == expected.decode()
    assert signature_valid(TOKEN, url, expected.decode())


def test_signature_over_another_scheme_host_or_token_is_refused() -> None:
    url = "wss://scribe.example.com/v1/media-stream"
    good = twilio_signature(TOKEN, url)
    assert not signature_valid(TOKEN, "https://scribe.example.com/v1/media-stream", good)
    assert not signature_valid(TOKEN, "wss://other.example.com/v1/media-stream", good)
    assert not signature_valid("another-token", url, good)
    assert not signature_valid(TOKEN, url, good[:-2] + "==")


@pytest.mark.parametrize(
    ("public", "host", "expected"),
    [
        ("", "scribe.example.com", "wss://scribe.example.com/v1/media-stream/t"),
        (
            "https://scribe.example.com",
            "10.0.0.5:8000",
            "wss://scribe.example.com/v1/media-stream/t",
        ),
        ("wss://scribe.example.com/", "x", "wss://scribe.example.com/v1/media-stream/t"),
        ("http://127.0.0.1:8000", "x", "wss://127.0.0.1:8000/v1/media-stream/t"),
    ],
)
def test_signed_url_is_the_public_wss_url(public: str, host: str, expected: str) -> None:
    assert signed_url(public, host, "/v1/media-stream/t") == expected


START = {
    "accountSid": "AC123",
    "streamSid": "MZ123",
    "callSid": "CA123",
    "tracks": ["inbound", "outbound"],
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    "customParameters": {"token": "t", "inbound_speaker": "assistant"},
}


def test_start_reads_twilio_field_names_and_ignores_new_ones() -> None:
    start = Start.model_validate({**START, "somethingNew": 1})
    assert start.stream_sid == "MZ123" and start.call_sid == "CA123"
    assert start.tracks == ["inbound", "outbound"]
    assert start.media_format.supported()
    assert start.custom_parameters["inbound_speaker"] == "assistant"


@pytest.mark.parametrize(
    "change",
    [
        {"tracks": []},
        {"tracks": ["both"]},
        {"streamSid": ""},
        {"mediaFormat": {"encoding": "audio/x-mulaw"}},
        {"customParameters": {"a": 1}},
    ],
)
def test_start_refuses_what_it_cannot_use(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Start.model_validate({**START, **change})


def test_media_takes_numbers_as_strings_as_twilio_sends_them() -> None:
    media = Media.model_validate(
        {"track": "outbound", "chunk": "1", "timestamp": "5", "payload": "AAA="}
    )
    assert media.timestamp == 5
    for bad in ("-1", "5.5", "abc", "", "9" * 20):
        with pytest.raises(ValidationError):
            Media.model_validate({"track": "inbound", "timestamp": bad, "payload": ""})


def test_payload_must_be_base64() -> None:
    assert decode_payload(base64.b64encode(b"\xff" * 160).decode()) == b"\xff" * 160
    with pytest.raises(ValueError, match="base64"):
        decode_payload("not base64!")
