"""Third-party secrets are stored sealed, bound to their owner and field."""

from __future__ import annotations

import pytest

from scribeline.sealed import SecretBox, SecretUnreadable


def test_sealed_value_opens_only_in_its_context() -> None:
    box = SecretBox("server secret " * 4)
    sealed = box.seal("auth-token-value", "org:1:twilio_auth_token")
    assert b"auth-token-value" not in sealed
    assert box.open(sealed, "org:1:twilio_auth_token") == "auth-token-value"
    with pytest.raises(SecretUnreadable):
        box.open(sealed, "org:2:twilio_auth_token")  # another organization's row
    with pytest.raises(SecretUnreadable):
        box.open(sealed, "org:1:deepgram_api_key")  # another field


def test_sealing_twice_differs_and_another_secret_cannot_open() -> None:
    box = SecretBox("server secret " * 4)
    assert box.seal("x", "c") != box.seal("x", "c")  # a fresh nonce each time
    with pytest.raises(SecretUnreadable):
        SecretBox("another secret " * 4).open(box.seal("x", "c"), "c")


def test_altered_or_foreign_bytes_are_refused() -> None:
    box = SecretBox("server secret " * 4)
    sealed = bytearray(box.seal("x", "c"))
    sealed[-1] ^= 1
    for bad in (bytes(sealed), b"", b"plain text token"):
        with pytest.raises(SecretUnreadable):
            box.open(bad, "c")
