"""The speech-settings contract: an organization's engine choice and sealed secrets,
and an assistant's engine."""

from __future__ import annotations

import asyncio

import pytest

from scribeline.domain import SpeechSettings
from scribeline.storage import Storage


async def test_settings_are_absent_then_changed_field_by_field(storage: Storage) -> None:
    org = await storage.create_org("acme")
    other = await storage.create_org("globex")
    assert await storage.get_speech_settings(org.id) is None
    stored = await storage.update_speech_settings(
        org.id,
        {
            "engine": "deepgram",
            "twilio_auth_token": b"\x01sealed-twilio",
            "deepgram_api_key": b"\x01sealed-deepgram",
            "require_twilio_signature": True,
        },
    )
    assert stored == SpeechSettings(
        org.id, "deepgram", b"\x01sealed-twilio", b"\x01sealed-deepgram", True, stored.updated_at
    )
    assert stored.updated_at > 0
    assert await storage.get_speech_settings(org.id) == stored
    assert await storage.get_speech_settings(other.id) is None  # per organization

    # A change sets only its fields; None clears a secret.
    again = await storage.update_speech_settings(
        org.id, {"engine": "local", "deepgram_api_key": None}
    )
    assert await storage.get_speech_settings(org.id) == again
    assert again.engine == "local" and again.deepgram_api_key is None
    assert again.twilio_auth_token == b"\x01sealed-twilio" and again.require_twilio_signature

    # A first change takes the defaults for the rest.
    fresh = await storage.update_speech_settings(other.id, {"deepgram_api_key": b"\x01k"})
    assert (fresh.engine, fresh.twilio_auth_token, fresh.require_twilio_signature) == (
        "default",
        None,
        False,
    )


async def test_concurrent_changes_of_different_fields_all_stay(storage: Storage) -> None:
    org = await storage.create_org("acme")
    await asyncio.gather(
        storage.update_speech_settings(org.id, {"twilio_auth_token": b"\x01t"}),
        storage.update_speech_settings(org.id, {"deepgram_api_key": b"\x01d"}),
        storage.update_speech_settings(org.id, {"engine": "local"}),
    )
    got = await storage.get_speech_settings(org.id)
    assert got is not None
    assert (got.twilio_auth_token, got.deepgram_api_key, got.engine) == (
        b"\x01t",
        b"\x01d",
        "local",
    )


async def test_only_settings_fields_can_be_changed(storage: Storage) -> None:
    org = await storage.create_org("acme")
    with pytest.raises(ValueError, match="not speech settings fields"):
        await storage.update_speech_settings(org.id, {"org_id; DROP TABLE x": 1})


async def test_only_organizations_with_a_twilio_token_are_signers(storage: Storage) -> None:
    a = await storage.create_org("a")
    b = await storage.create_org("b")
    c = await storage.create_org("c")
    await storage.update_speech_settings(a.id, {"twilio_auth_token": b"\x01a"})
    await storage.update_speech_settings(b.id, {"deepgram_api_key": b"\x01b"})
    await storage.update_speech_settings(c.id, {"twilio_auth_token": b"\x01c"})
    signers = await storage.speech_settings_with_twilio_token()
    assert [s.org_id for s in signers] == [a.id, c.id]
    assert [s.twilio_auth_token for s in signers] == [b"\x01a", b"\x01c"]


async def test_assistant_engine_defaults_and_changes_alone(storage: Storage) -> None:
    org = await storage.create_org("acme")
    default = await storage.get_assistant(org.id, None)
    assert default is not None and default.speech_engine == "default"
    made = await storage.create_assistant(org.id, "Sales", True, "deepgram")
    assert made.speech_engine == "deepgram"
    assert await storage.get_assistant(org.id, made.id) == made

    changed = await storage.update_assistant(org.id, made.id, speech_engine="local")
    assert changed is not None
    assert (changed.speech_engine, changed.transcription_enabled) == ("local", True)
    switched = await storage.update_assistant(org.id, made.id, transcription_enabled=False)
    assert switched is not None
    assert (switched.speech_engine, switched.transcription_enabled) == ("local", False)
    other = await storage.create_org("globex")
    assert await storage.update_assistant(other.id, made.id, speech_engine="local") is None
