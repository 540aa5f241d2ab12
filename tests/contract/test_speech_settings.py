"""The speech-settings contract: an organization's engine choice and sealed secrets,
and an assistant's engine."""

from __future__ import annotations

import dataclasses

from scribeline.domain import SpeechSettings
from scribeline.storage import Storage


async def test_settings_are_absent_then_stored_whole(storage: Storage) -> None:
    org = await storage.create_org("acme")
    other = await storage.create_org("globex")
    assert await storage.get_speech_settings(org.id) is None
    wanted = SpeechSettings(
        org.id,
        engine="deepgram",
        twilio_auth_token=b"\x01sealed-twilio",
        deepgram_api_key=b"\x01sealed-deepgram",
        require_twilio_signature=True,
    )
    stored = await storage.put_speech_settings(wanted)
    assert stored.updated_at > 0
    assert await storage.get_speech_settings(org.id) == stored
    assert await storage.get_speech_settings(other.id) is None  # per organization

    cleared = dataclasses.replace(stored, engine="local", deepgram_api_key=None)
    again = await storage.put_speech_settings(cleared)
    got = await storage.get_speech_settings(org.id)
    assert got == again
    assert got is not None and got.deepgram_api_key is None and got.engine == "local"
    assert got.twilio_auth_token == b"\x01sealed-twilio"


async def test_only_organizations_with_a_twilio_token_are_signers(storage: Storage) -> None:
    a = await storage.create_org("a")
    b = await storage.create_org("b")
    c = await storage.create_org("c")
    await storage.put_speech_settings(SpeechSettings(a.id, twilio_auth_token=b"\x01a"))
    await storage.put_speech_settings(SpeechSettings(b.id, deepgram_api_key=b"\x01b"))
    await storage.put_speech_settings(SpeechSettings(c.id, twilio_auth_token=b"\x01c"))
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
