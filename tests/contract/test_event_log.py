"""The EventLog contract (storage/base.py), run against every storage backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scribeline.errors import StreamClosed
from scribeline.events import NewEvent, Position
from scribeline.storage import Storage, open_storage


def ev(n: int, closes: bool = False) -> NewEvent:
    return NewEvent("transcript", {"n": n}, closes=closes)


async def test_seqs_start_at_one_and_increase_by_one(storage: Storage) -> None:
    """append assigns 1, 2, 3, ... across calls and batches."""
    first = await storage.append("s", [ev(1)])
    batch = await storage.append("s", [ev(2), ev(3)])
    assert [e.seq for e in first + batch] == [1, 2, 3]
    assert [e.data["n"] for e in await storage.read("s")] == [1, 2, 3]


async def test_streams_are_independent(storage: Storage) -> None:
    """Each stream has its own sequence."""
    await storage.append("a", [ev(1), ev(2)])
    (b,) = await storage.append("b", [ev(1)])
    assert b.seq == 1
    assert (await storage.head("a")).seq == 2


async def test_read_after_and_limit(storage: Storage) -> None:
    """read returns seq > after, oldest first, at most limit."""
    await storage.append("s", [ev(n) for n in range(1, 11)])
    assert [e.seq for e in await storage.read("s", after=7)] == [8, 9, 10]
    assert [e.seq for e in await storage.read("s", after=2, limit=3)] == [3, 4, 5]
    assert await storage.read("s", after=10) == []


async def test_head_of_an_unknown_stream(storage: Storage) -> None:
    """A stream with no events is at seq 0 with no epoch."""
    assert await storage.head("nothing") == Position(0, "")


async def test_epoch_is_stable_for_a_stream(storage: Storage) -> None:
    """The epoch is set with the first event and does not change on later appends."""
    await storage.append("s", [ev(1)])
    epoch = (await storage.head("s")).epoch
    await storage.append("s", [ev(2)])
    assert epoch and (await storage.head("s")) == Position(2, epoch)


async def test_a_closing_event_ends_the_stream(storage: Storage) -> None:
    """After an event with closes=True, appends raise StreamClosed and store nothing."""
    await storage.append("s", [ev(1), ev(2, closes=True)])
    with pytest.raises(StreamClosed):
        await storage.append("s", [ev(3)])
    assert (await storage.head("s")).seq == 2


async def test_a_batch_is_all_or_nothing(storage: Storage) -> None:
    """A batch that fails part-way stores none of its events."""
    await storage.append("s", [ev(1)])
    with pytest.raises(StreamClosed):
        await storage.append("s", [ev(2, closes=True), ev(3)])
    assert [e.seq for e in await storage.read("s")] == [1]


async def test_concurrent_appends_get_unique_consecutive_seqs(storage: Storage) -> None:
    """500 concurrent appends to one stream are serialized: seqs 1..500, each once."""
    results = await asyncio.gather(*(storage.append("s", [ev(n)]) for n in range(500)))
    seqs = sorted(r[0].seq for r in results)
    assert seqs == list(range(1, 501))
    stored = await storage.read("s")
    assert sorted(e.data["n"] for e in stored) == list(range(500))


async def test_appends_are_stored_in_submission_order(storage: Storage) -> None:
    """Appends started in order get seqs in that order (what pipelined producers rely on)."""
    tasks = [asyncio.ensure_future(storage.append("s", [ev(n)])) for n in range(200)]
    results = await asyncio.gather(*tasks)
    assert [r[0].data["n"] for r in results] == list(range(200))
    assert [r[0].seq for r in results] == list(range(1, 201))


async def test_one_failed_append_does_not_undo_others_committed_with_it(
    storage: Storage,
) -> None:
    """In a group commit, a refused append fails alone; its neighbours are durable."""
    await storage.append("closed", [ev(1, closes=True)])
    outcomes = await asyncio.gather(
        storage.append("ok", [ev(1)]),
        storage.append("closed", [ev(2)]),
        storage.append("ok", [ev(2)]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], StreamClosed)
    assert [e.seq for e in await storage.read("ok")] == [1, 2]


async def test_events_survive_a_restart(storage_url: str, tmp_path: Path) -> None:
    """Acknowledged appends are durable: a reopened store has them, with the same epoch."""
    first = await open_storage(storage_url, tmp_path)
    await first.append("s", [ev(1), ev(2)])
    epoch = (await first.head("s")).epoch
    await first.close()
    second = await open_storage(storage_url, tmp_path)
    try:
        assert [e.data["n"] for e in await second.read("s")] == [1, 2]
        assert await second.head("s") == Position(2, epoch)
    finally:
        await second.close()


def said(segment: str | None, final: bool) -> NewEvent:
    data = {"content": "x", "speaker": "user", "is_final": final, "segment_id": segment}
    return NewEvent("transcript", data)


async def test_segment_heads_follow_every_append(storage: Storage) -> None:
    """A call's segment heads are its latest final and latest partial per segment,
    as of the last append, batches included; other segments, streams and kinds of
    event do not appear."""
    stream = "call:1"
    await storage.append(stream, [said("a", False), said("a", False), said("b", True)])
    await storage.append(stream, [said(None, True), said("a", True), said("b", False)])
    await storage.append(stream, [said("a", True)])
    await storage.append("call:2", [said("a", True)])
    heads = await storage.segment_heads(stream, {"a", "b", "c"})
    assert heads == {"a": (7, 2), "b": (3, 6)}
    assert await storage.segment_heads(stream, set()) == {}
    assert await storage.segment_heads("call:2", {"a"}) == {"a": (1, None)}


async def test_heads_reads_many_streams_at_once(storage: Storage) -> None:
    """heads answers for every stream asked: each one's head and epoch as head says,
    Position(0, "") for a stream with no events, and nothing for no streams."""
    await storage.append("a", [ev(1), ev(2), ev(3)])
    await storage.append("b", [ev(1)])
    heads = await storage.heads(["a", "b", "none"])
    assert heads == {
        "a": await storage.head("a"),
        "b": await storage.head("b"),
        "none": Position(0, ""),
    }
    assert heads["a"].seq == 3 and heads["a"].epoch and heads["a"].epoch != heads["b"].epoch
    assert await storage.heads([]) == {}
    many = await storage.heads([f"s{n}" for n in range(1200)] + ["a"])
    assert len(many) == 1201 and many["a"] == heads["a"]


async def test_stored_events_carry_their_streams_epoch(storage: Storage) -> None:
    """append and read both fill each event's epoch with its stream's."""
    stored = await storage.append("s", [ev(1), ev(2)])
    epoch = (await storage.head("s")).epoch
    assert [e.epoch for e in stored] == [epoch, epoch]
    assert [e.epoch for e in await storage.read("s")] == [epoch, epoch]
