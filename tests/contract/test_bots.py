"""The BotStore contract: bots belong to one organization, and a bot's status is
a projection of the events on its stream, updated in the same transaction."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from scribeline.auth import new_api_key
from scribeline.domain import Bot, BotStatus
from scribeline.errors import StreamClosed
from scribeline.events import BotEventType, NewEvent
from scribeline.storage import Storage


async def _bot(storage: Storage, org: str = "acme", model: str = "realtime") -> Bot:
    existing = await storage.get_org(org)
    org_id = existing.id if existing else (await storage.create_org(org)).id
    _, prefix, digest = new_api_key()
    key = await storage.add_api_key(org_id, prefix, digest, frozenset({"write"}), "bots")
    return await storage.create_bot(
        org_id, key.id, "https://meet.example.com/x", "Notetaker", model
    )


async def test_a_new_bot_is_joining_with_a_unique_random_id(storage: Storage) -> None:
    """Creation returns a joining bot whose public id is a fresh UUID and reads back equal."""
    first, second = await _bot(storage), await _bot(storage)
    assert first.status == BotStatus.JOINING and first.started_at is None
    assert str(uuid.UUID(first.public_id)) == first.public_id
    assert first.public_id != second.public_id and first.stream != second.stream
    assert await storage.get_bot(first.org_id, first.public_id) == first
    assert await storage.get_bot(None, first.public_id) == first


async def test_another_organizations_bot_is_not_found(storage: Storage) -> None:
    """Looking a bot up within another organization finds nothing, and lists are per org."""
    mine = await _bot(storage, "acme")
    theirs = await _bot(storage, "globex")
    assert await storage.get_bot(theirs.org_id, mine.public_id) is None
    assert [b.public_id for b in await storage.list_bots(mine.org_id, None, 10)] == [mine.public_id]


async def test_status_follows_start_then_stop(storage: Storage) -> None:
    """start → recording with started_at; stop → finished with ended_at and the reason."""
    bot = await _bot(storage)
    (started,) = await storage.append(bot.stream, [NewEvent(BotEventType.START, {})])
    recording = await storage.get_bot(bot.org_id, bot.public_id)
    assert recording is not None
    assert (recording.status, recording.started_at) == (BotStatus.RECORDING, started.ts)
    (stopped,) = await storage.append(
        bot.stream, [NewEvent(BotEventType.STOP, {"reason": "meeting_ended"}, closes=True)]
    )
    finished = await storage.get_bot(bot.org_id, bot.public_id)
    assert finished is not None and finished.ended
    assert (finished.status, finished.ended_at, finished.stop_reason) == (
        BotStatus.FINISHED,
        stopped.ts,
        "meeting_ended",
    )


async def test_an_error_fails_the_bot_and_closes_its_stream(storage: Storage) -> None:
    """error → failed with the message; nothing can be appended afterwards."""
    bot = await _bot(storage)
    await storage.append(
        bot.stream, [NewEvent(BotEventType.ERROR, {"message": "not admitted"}, closes=True)]
    )
    failed = await storage.get_bot(bot.org_id, bot.public_id)
    assert failed is not None
    assert (failed.status, failed.error, failed.started_at) == (
        BotStatus.FAILED,
        "not admitted",
        None,
    )
    with pytest.raises(StreamClosed):
        await storage.append(bot.stream, [NewEvent(BotEventType.TS, {"transcript": "x"})])


async def test_concurrent_stops_store_exactly_one(storage: Storage) -> None:
    """Of many concurrent closing stops, exactly one is stored; the others are refused."""
    bot = await _bot(storage)
    await storage.append(bot.stream, [NewEvent(BotEventType.START, {})])
    results = await asyncio.gather(
        *(
            storage.append(bot.stream, [NewEvent(BotEventType.STOP, {}, closes=True)])
            for _ in range(20)
        ),
        return_exceptions=True,
    )
    stored = [r for r in results if isinstance(r, list)]
    assert len(stored) == 1 and stored[0][0].seq == 2
    assert all(isinstance(r, StreamClosed) for r in results if not isinstance(r, list))
    assert [e.type for e in await storage.read(bot.stream)] == ["start", "stop"]


async def test_list_is_newest_first_and_filters_by_status(storage: Storage) -> None:
    """The list is newest first, honours the limit, and filters by status."""
    bots = [await _bot(storage) for _ in range(3)]
    await storage.append(bots[1].stream, [NewEvent(BotEventType.START, {})])
    listed = await storage.list_bots(bots[0].org_id, None, 2)
    assert [b.public_id for b in listed] == [bots[2].public_id, bots[1].public_id]
    recording = await storage.list_bots(bots[0].org_id, BotStatus.RECORDING, 10)
    assert [b.public_id for b in recording] == [bots[1].public_id]
