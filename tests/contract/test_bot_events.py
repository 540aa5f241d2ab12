"""``BotService.events`` on every backend: a page of a bot's stored events, each
encoded once as the organization event stream has it, bounded in count and in
bytes (what ``GET /v1/bots/{id}/events`` sends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from scribeline.auth import new_api_key
from scribeline.broker import open_broker
from scribeline.cluster import Signals, open_cluster
from scribeline.domain import Bot
from scribeline.events import BotEventType, NewEvent
from scribeline.ingest.bots import BotService
from scribeline.ingest.publish import Publisher
from scribeline.protocols.meeting_bot import encode_org_event
from scribeline.storage import Storage


@pytest.fixture
async def bots(storage: Storage) -> AsyncIterator[BotService]:
    broker = open_broker("memory://")
    service = BotService(
        storage, broker, Publisher(broker), 1.0, Signals(open_cluster("memory://"))
    )
    try:
        yield service
    finally:
        await service.close()


async def _bot_with_chat(storage: Storage, sizes: list[int]) -> Bot:
    """A bot whose stream holds one chat message of each size (characters of text)."""
    org = await storage.create_org("acme")
    _, prefix, digest = new_api_key()
    key = await storage.add_api_key(org.id, prefix, digest, frozenset({"write"}), "k")
    bot = await storage.create_bot(org.id, key.id, "https://meet.example.com/x", "B", "m")
    events = [NewEvent(BotEventType.CHAT_MESSAGE, {"text": "x" * size}) for size in sizes]
    await storage.append(bot.stream, events)
    return bot


async def test_a_page_stops_before_its_byte_cap_and_says_where_to_go_on(
    storage: Storage, bots: BotService
) -> None:
    """Events of about 1 KB with a 3.5 KB cap: a page holds three (a fourth would pass
    the cap) and continues after the third; following ``next_after`` yields every
    event once, in seq order, byte for byte as the event stream encodes them."""
    bot = await _bot_with_chat(storage, [1000] * 8)
    stored = await storage.read(bot.stream, 0)
    first = await bots.events(bot, 0, 500, 3500)
    assert len(first.frames) == 3 and first.next_after == stored[2].seq
    assert sum(map(len, first.frames)) <= 3500
    frames, after = list(first.frames), first.next_after
    while after is not None:
        page = await bots.events(bot, after, 500, 3500)
        assert page.frames and sum(map(len, page.frames)) <= 3500
        frames += page.frames
        after = page.next_after
    assert frames == [encode_org_event(bot.public_id, event) for event in stored]
    assert [orjson.loads(f)["seq"] for f in frames] == [e.seq for e in stored]


async def test_an_event_larger_than_the_cap_is_a_page_alone_and_counts_still_bound(
    storage: Storage, bots: BotService
) -> None:
    """A page holds at least one event, however large; within the byte cap ``limit``
    bounds it, and the last page says nothing follows."""
    bot = await _bot_with_chat(storage, [5000, 10, 10, 10])
    stored = await storage.read(bot.stream, 0)
    big = await bots.events(bot, 0, 500, 1000)
    assert len(big.frames) == 1 and big.next_after == stored[0].seq
    counted = await bots.events(bot, stored[0].seq, 2, 1000)
    assert len(counted.frames) == 2 and counted.next_after == stored[2].seq
    last = await bots.events(bot, stored[2].seq, 2, 1000)
    assert len(last.frames) == 1 and last.next_after is None
    assert (await bots.events(bot, stored[-1].seq, 2, 1000)).frames == []
