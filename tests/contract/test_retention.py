"""Deleting calls on every backend (``RetentionStore``): one call on request, and
every organization's expired calls and bots in bounded batches; a deleted call's
stream stays closed so that no stale copy of the call brings it back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from scribeline.errors import CallEnded, NotFound, StreamClosed
from scribeline.events import EventType, NewEvent, now_ms
from scribeline.ingest.calls import CallService
from scribeline.ingest.models import CreateCall, Transcript
from scribeline.storage import Storage
from scribeline.storage.base_retention import DAY_MS, SWEEP_LOCK, Deleted
from tests.old_calls import EVENTS_PER_CALL, call_service, ended_bot, ended_call, set_retention

NOW = now_ms()


@pytest.fixture
async def nodes(storage: Storage) -> AsyncIterator[tuple[CallService, CallService]]:
    """Two call services on one database, each with its own cache (two nodes that
    do not hear each other's notices: the worst case)."""
    made = [call_service(storage), call_service(storage)]
    yield made[0], made[1]
    for service in made:
        await service._campaigns.close()


def _line(text: str, segment: str | None = None) -> list[Transcript]:
    return [Transcript(content=text, speaker="user", segment_id=segment)]


async def test_deleting_a_call_removes_its_rows_and_leaves_a_closed_tombstone(
    storage: Storage,
) -> None:
    """The call, its events and segment heads go; its stream's head row stays,
    closed, so an append through a copy of the call is refused; another
    organization cannot delete it; the next call never reuses its id."""
    acme, other = await storage.create_org("acme"), await storage.create_org("other")
    call = await ended_call(storage, acme.id, "CA1", NOW)
    head = await storage.head(call.stream)
    assert await storage.delete_call(other.id, call.id) is None
    assert await storage.get_call(acme.id, "CA1") is not None
    assert await storage.delete_call(acme.id, call.id) == 4
    assert await storage.get_call(acme.id, "CA1") is None
    assert await storage.read(call.stream) == []
    assert await storage.segment_heads(call.stream, ["s1"]) == {}
    assert await storage.head(call.stream) == head
    with pytest.raises(StreamClosed):
        await storage.append(call.stream, [NewEvent(EventType.TRANSCRIPT, {"content": "x"})])
    assert await storage.delete_call(acme.id, call.id) is None
    again = await ended_call(storage, acme.id, "CA1", NOW)
    assert again.id > call.id
    assert (await storage.list_calls(acme.id, None, 10, None)).calls == [
        await storage.get_call(acme.id, "CA1")
    ]


async def test_a_live_call_is_ended_then_deleted_and_a_stale_copy_cannot_revive_it(
    storage: Storage, nodes: tuple[CallService, CallService]
) -> None:
    """Deleting a live call ends it first (``canceled``); a node that cached the
    call before and never heard of the deletion is refused as ended, and storage
    keeps nothing of the refused append."""
    a, b = nodes
    org = await storage.create_org("acme")
    call = await a.create(org.id, CreateCall(call_sid="CA1"))
    cached = await b.for_append(org.id, "CA1")
    await b.append_transcripts(cached, _line("before", "s1"))
    await a.delete(org.id, "CA1", key_id=7)
    with pytest.raises(NotFound):
        await a.get(org.id, "CA1")
    with pytest.raises(CallEnded):
        await b.append_transcripts(await b.for_append(org.id, "CA1"), _line("after"))
    assert await storage.read(call.stream) == []
    with pytest.raises(NotFound):
        await a.delete(org.id, "CA1", key_id=7)


async def test_a_sweep_deletes_only_what_outlived_its_organizations_retention(
    storage: Storage,
) -> None:
    """With a retention of one day: calls and bots that ended two days ago go with
    their events; one that ended an hour ago, a live one, and every call of an
    organization without retention stay. Counts per organization, no content."""
    acme, keep = await storage.create_org("acme"), await storage.create_org("keep")
    await set_retention(storage, acme.id, 1)
    old = [await ended_call(storage, acme.id, f"OLD{i}", NOW - 2 * DAY_MS - i) for i in range(3)]
    recent = await ended_call(storage, acme.id, "RECENT", NOW - 3_600_000)
    await call_service(storage).create(
        acme.id, CreateCall(call_sid="LIVE"), started_at=NOW - 9 * DAY_MS
    )
    await ended_call(storage, keep.id, "OLD", NOW - 30 * DAY_MS)
    bot = await ended_bot(storage, acme.id, NOW - 3 * DAY_MS)
    fresh_bot = await ended_bot(storage, acme.id, NOW)

    sweep = await storage.sweep_expired(NOW, 100, 100_000)
    assert sweep is not None and not sweep.more
    assert sweep.deleted == [Deleted(acme.id, calls=3, events=3 * EVENTS_PER_CALL + 2, bots=1)]
    for call in old:
        assert await storage.get_call(acme.id, call.call_sid) is None
        assert await storage.read(call.stream) == []
    assert await storage.read(bot.stream) == []
    assert await storage.get_bot(acme.id, bot.public_id) is None
    assert await storage.get_bot(acme.id, fresh_bot.public_id) is not None
    assert {c.call_sid for c in (await storage.list_calls(None, None, 10, None)).calls} == {
        "RECENT",
        "LIVE",
        "OLD",
    }
    assert len(await storage.read(recent.stream)) == 4
    again = await storage.sweep_expired(NOW, 100, 100_000)
    assert again is not None and again.deleted == [] and not again.more


async def test_a_sweep_goes_in_bounded_batches(storage: Storage) -> None:
    """At most ``max_calls`` per batch, and about ``max_events`` events (the first
    call of a batch whatever its length): batches say when more may be left."""
    org = await storage.create_org("acme")
    await set_retention(storage, org.id, 1)
    for i in range(5):
        await ended_call(storage, org.id, f"C{i}", NOW - 2 * DAY_MS - i)
    first = await storage.sweep_expired(NOW, 2, 100_000)
    assert first is not None and first.more and first.deleted[0].calls == 2
    by_events = await storage.sweep_expired(NOW, 100, 5)  # each call holds 4 events
    assert by_events is not None and by_events.more and by_events.deleted[0].calls == 1
    last = await storage.sweep_expired(NOW, 100, 100_000)
    assert last is not None and not last.more and last.deleted[0].calls == 2
    assert (await storage.list_calls(org.id, None, 10, None)).calls == []


async def test_one_node_sweeps_at_a_time_on_postgres(storage: Storage, storage_url: str) -> None:
    """While another transaction holds the sweep's advisory lock, a sweep does
    nothing and says so (None); once it is released, the sweep runs."""
    if not storage_url.startswith("postgresql"):
        pytest.skip("SQLite has one process, whose writer runs one sweep at a time")
    org = await storage.create_org("acme")
    await set_retention(storage, org.id, 1)
    await ended_call(storage, org.id, "C1", NOW - 2 * DAY_MS)
    other = await asyncpg.connect(storage_url)
    try:
        holding = other.transaction()
        await holding.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", SWEEP_LOCK)
        assert await storage.sweep_expired(NOW, 100, 100_000) is None
        await holding.rollback()
        sweep = await storage.sweep_expired(NOW, 100, 100_000)
        assert sweep is not None and sweep.deleted == [Deleted(org.id, 1, 4, 0)]
    finally:
        await other.close()
