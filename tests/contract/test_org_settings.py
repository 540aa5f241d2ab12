"""The organization-settings contract (every storage backend), and the per-node
cache of what a call redacts, dropped on every node of a cluster when a setting
changes (every cluster backend)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from scribeline.auth import new_api_key
from scribeline.broker import open_broker
from scribeline.domain import OrgSettings
from scribeline.events import BotEventType, NewEvent
from scribeline.ingest.bots import BotService
from scribeline.ingest.organization import OrganizationService
from scribeline.ingest.publish import Publisher
from scribeline.storage import Storage, open_storage
from tests.contract.cluster_backends import *  # noqa: F403 - the fixtures
from tests.contract.cluster_backends import Nodes


async def test_settings_default_off_then_change_field_by_field(storage: Storage) -> None:
    org = await storage.create_org("acme")
    other = await storage.create_org("globex")
    assert await storage.get_org_settings(org.id) == OrgSettings(org.id, "acme", (), None)
    assert await storage.get_org_settings(10**9) is None
    assert await storage.update_org_settings(10**9, {"retention_days": 3}) is None

    changed = await storage.update_org_settings(org.id, {"redaction": ["card", "email"]})
    assert changed == OrgSettings(org.id, "acme", ("card", "email"), None)
    changed = await storage.update_org_settings(org.id, {"retention_days": 30})
    assert changed == OrgSettings(org.id, "acme", ("card", "email"), 30)  # redaction stays
    assert await storage.get_org_settings(org.id) == changed
    assert await storage.get_org_settings(other.id) == OrgSettings(other.id, "globex")
    off = await storage.update_org_settings(org.id, {"redaction": [], "retention_days": None})
    assert off == OrgSettings(org.id, "acme", (), None)


async def test_concurrent_changes_of_different_fields_all_stay(storage: Storage) -> None:
    org = await storage.create_org("acme")
    await asyncio.gather(
        storage.update_org_settings(org.id, {"redaction": ["ssn"]}),
        storage.update_org_settings(org.id, {"retention_days": 7}),
    )
    assert await storage.get_org_settings(org.id) == OrgSettings(org.id, "acme", ("ssn",), 7)


async def test_an_assistant_overrides_or_inherits(storage: Storage) -> None:
    """``redaction_of``: the assistant's list if it has one ([] is off), else the
    organization's; another organization's assistant is never changed."""
    org = await storage.create_org("acme")
    other = await storage.create_org("globex")
    default = await storage.get_assistant(org.id, None)
    assert default is not None
    own = await storage.create_assistant(org.id, "billing", True)
    await storage.update_org_settings(org.id, {"redaction": ["card"]})
    assert await storage.redaction_of(org.id, own.id) == ("card",)
    assert await storage.assistant_redactions(org.id) == {default.id: None, own.id: None}

    assert await storage.set_assistant_redaction(org.id, own.id, [])
    assert await storage.redaction_of(org.id, own.id) == ()
    assert await storage.set_assistant_redaction(org.id, own.id, ["email", "phone"])
    assert await storage.redaction_of(org.id, own.id) == ("email", "phone")
    assert await storage.redaction_of(org.id, default.id) == ("card",)
    assert await storage.assistant_redactions(org.id) == {
        default.id: None,
        own.id: ("email", "phone"),
    }
    assert not await storage.set_assistant_redaction(other.id, own.id, [])
    assert await storage.set_assistant_redaction(org.id, own.id, None)
    assert await storage.redaction_of(org.id, own.id) == ("card",)
    # No such assistant (or none at all): the organization's.
    assert await storage.redaction_of(org.id, 0) == ("card",)
    assert await storage.redaction_of(other.id, own.id) == ()
    assert await storage.redaction_of(10**9, own.id) == ()


async def test_a_change_on_one_node_reaches_the_others_cache(nodes: Nodes, tmp_path: Path) -> None:
    """Node B caches what a call redacts for a minute; a change made through node A
    (organization or assistant) is seen on B at once, not when the cache expires."""
    storage = await open_storage("", tmp_path)
    try:
        a = OrganizationService(storage, await nodes.signals(), cache_seconds=60)
        b = OrganizationService(storage, await nodes.signals(), cache_seconds=60)
        org = await storage.create_org("acme")
        assistant = await storage.create_assistant(org.id, "billing", True)
        assert await b.redaction_for(org.id, assistant.id) == frozenset()  # cached on B
        assert await b.org_redaction(org.id) == frozenset()

        await storage.update_org_settings(org.id, {"redaction": ["card"]})
        assert await b.redaction_for(org.id, assistant.id) == frozenset()  # still cached
        await a.update(org.id, {"redaction": ["card", "ssn"]})
        await _until(b, org.id, assistant.id, {"card", "ssn"})
        assert await b.org_redaction(org.id) == frozenset({"card", "ssn"})

        await a.set_assistant_redaction(org.id, assistant.id, ["email"])
        await _until(b, org.id, assistant.id, {"email"})
    finally:
        await nodes.close()
        await storage.close()


async def _until(
    node: OrganizationService, org_id: int, assistant_id: int, kinds: set[str]
) -> None:
    async with asyncio.timeout(5):
        while await node.redaction_for(org_id, assistant_id) != kinds:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # the notice is on its way: nothing to await


async def test_meeting_bot_text_is_redacted_with_the_organizations_kinds(
    nodes: Nodes, tmp_path: Path
) -> None:
    """A bot's ``ts`` transcript and chat message are stored (and published) with
    the organization's kinds redacted; its other events are stored as sent."""
    storage = await open_storage("", tmp_path)
    broker = open_broker("memory://")
    try:
        signals = await nodes.signals()
        settings = OrganizationService(storage, signals)
        bots = BotService(
            storage, broker, Publisher(broker), 1.0, signals, redaction=settings.org_redaction
        )
        org = await storage.create_org("acme")
        _, prefix, digest = new_api_key()
        key = await storage.add_api_key(org.id, prefix, digest, frozenset({"write"}), "k")
        bot = await bots.create(org.id, key.id, "https://meet.example/x", "Bot", "m")
        said = {"transcript": "card 4111 1111 1111 1111", "start": 0.0, "end": 1.0}
        await bots.append(bot, NewEvent(BotEventType.TS, said))  # off: as sent
        await settings.update(org.id, {"redaction": ["card", "email"]})
        await bots.append(bot, NewEvent(BotEventType.TS, said))
        chat = {"username": "Ann", "content": "mail me: ann@example.com"}
        await bots.append(bot, NewEvent(BotEventType.CHAT_MESSAGE, chat))
        who = {"participantId": "ann@example.com"}
        await bots.append(bot, NewEvent(BotEventType.PARTICIPANT_TRACKED, who))
        stored = [e.data for e in await storage.read(bot.stream)]
        assert stored == [
            said,
            {**said, "transcript": "card [CARD]"},
            {**chat, "content": "mail me: [EMAIL]"},
            who,  # not text a speaker said or wrote
        ]
    finally:
        await broker.close()
        await nodes.close()
        await storage.close()
