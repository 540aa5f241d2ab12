"""The log filter scrubs credentials: database and Redis URLs, live-audio secrets."""

from __future__ import annotations

import pytest

from scribeline.logs import REDACTED, redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "cannot reach postgresql://scribe:s3cr3tPW@db.internal:5432/x",
            f"cannot reach postgresql://{REDACTED}@db.internal:5432/x",
        ),
        ("redis://:hunter2@cache:6379/0 down", f"redis://{REDACTED}@cache:6379/0 down"),
        ("postgresql+asyncpg://u:pw@h/d", f"postgresql+asyncpg://{REDACTED}@h/d"),
        ("url='rediss://default:p%40ss@r:6380'", f"url='rediss://{REDACTED}@r:6380'"),
    ],
)
def test_url_passwords_are_redacted(text: str, shown: str) -> None:
    """user:password@ goes, the host and database stay (they help an operator)."""
    assert redact(text) == shown


@pytest.mark.parametrize(
    "text",
    ["postgresql://scribe@db/x", "redis://cache:6379/0", "see https://example.com/a:b"],
)
def test_urls_without_a_password_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("GET /v1/media-stream/abcDEF123.x HTTP/1.1", f"GET /v1/media-stream/{REDACTED} HTTP/1.1"),
        ("Authorization: Token dg_live_key", f"Authorization: Token {REDACTED}"),
        ("X-Twilio-Signature: 9sQ2k+abc=", f"X-Twilio-Signature: {REDACTED}"),
        ('"/v1/media-stream/<token>" 101', '"/v1/media-stream/<token>" 101'),  # already hidden
    ],
)
def test_live_audio_credentials_are_redacted(text: str, shown: str) -> None:
    """A media stream's path token, Deepgram's ``Token`` header, a Twilio signature."""
    assert redact(text) == shown
