"""Appends under concurrency: seqs stay gap-free whatever fails around them, and
appends started in order by one task are stored in that order (storage/base.py)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from scribeline.events import NewEvent, Position, StoredEvent
from scribeline.storage import Storage

STREAMS = 6


def _event(tag: str, index: int, **data: Any) -> NewEvent:
    return NewEvent("transcript", {"tag": tag, "i": index, **data})


def _append(storage: Storage, n: int, rng: random.Random) -> tuple[str, list[NewEvent], bool]:
    """The n-th append of a round: a stream, its events, and whether it must fail.

    Every fifth append is refused, in one of four ways: its stream has ended; a
    later event of its batch follows a closing one; its data cannot be encoded;
    its timestamp does not fit a 64-bit column (the database driver refuses it,
    so a group commit must roll back and run the others again).
    """
    stream = f"s{n % STREAMS}"
    tag = f"t{n}"
    events = [_event(tag, i) for i in range(rng.randint(1, 3))]
    if n % 5:
        return stream, events, False
    kind = (n // 5) % 4
    if kind == 0:
        return "ended", events, True
    if kind == 1:
        return stream, [NewEvent("transcript", {"tag": tag}, closes=True), *events], True
    if kind == 2:
        return stream, [*events, _event(tag, 9, bad={1, 2})], True
    return stream, [*events, NewEvent("transcript", {"tag": tag}, ts=2**70)], True


async def test_seqs_stay_gap_free_when_appends_fail_among_concurrent_ones(
    storage: Storage,
) -> None:
    """Rounds of 300 appends started at once over six streams, one in five refused:
    every refused append raises and stores nothing, every acknowledged one is
    stored whole at the seqs it was given, and each stream's seqs are 1..head
    with no gap (refusals and rolled-back group commits leave none)."""
    await storage.append("ended", [NewEvent("transcript", {}, closes=True)])
    rng = random.Random(7)
    acknowledged: dict[str, list[StoredEvent]] = {}
    for round_ in range(4):
        plans = [_append(storage, round_ * 1000 + n, rng) for n in range(300)]
        tasks = [asyncio.create_task(storage.append(s, events)) for s, events, _ in plans]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for (stream, events, bad), outcome in zip(plans, outcomes, strict=True):
            if bad:
                assert isinstance(outcome, Exception), (stream, events)
                continue
            assert isinstance(outcome, list), outcome
            assert [e.data for e in outcome] == [e.data for e in events]
            assert [e.seq for e in outcome] == list(
                range(outcome[0].seq, outcome[0].seq + len(events))
            )
            acknowledged.setdefault(stream, []).extend(outcome)
    for n in range(STREAMS):
        stream = f"s{n}"
        stored = await storage.read(stream)
        assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
        assert (await storage.head(stream)).seq == len(stored)
        assert sorted(stored, key=lambda e: e.seq) == sorted(
            acknowledged[stream], key=lambda e: e.seq
        )
    assert [e.seq for e in await storage.read("ended")] == [1]


async def test_appends_started_in_order_by_one_task_are_stored_in_that_order(
    storage: Storage,
) -> None:
    """Twenty producers each start 60 appends as tasks, one after another without
    awaiting them (yielding to the others every few), over three shared streams:
    each producer's events are stored, and acknowledged, in the order it started
    them, however the producers interleave."""

    async def produce(producer: int) -> list[list[StoredEvent]]:
        stream = f"s{producer % 3}"
        tasks = []
        for index in range(60):
            event = NewEvent("transcript", {"p": producer, "i": index})
            tasks.append(asyncio.create_task(storage.append(stream, [event])))
            if index % 7 == 0:
                await asyncio.sleep(0)  # let the other producers start theirs in between
        return await asyncio.gather(*tasks)

    results = await asyncio.gather(*(produce(p) for p in range(20)))
    for acked in results:
        assert [batch[0].data["i"] for batch in acked] == list(range(60))
        seqs = [batch[0].seq for batch in acked]
        assert seqs == sorted(seqs)
    for n in range(3):
        stored = await storage.read(f"s{n}")
        assert len(stored) == 60 * len(range(n, 20, 3))
        for producer in range(n, 20, 3):
            mine = [e.data["i"] for e in stored if e.data["p"] == producer]
            assert mine == list(range(60))


async def test_a_refused_append_to_a_new_stream_leaves_no_trace(storage: Storage) -> None:
    """An append to a stream with no events that is refused leaves the stream
    without a head, as if it had never been named."""
    outcomes = await asyncio.gather(
        storage.append("new", [NewEvent("transcript", {"bad": {1}})]),
        storage.append("other", [NewEvent("transcript", {})]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], TypeError) and isinstance(outcomes[1], list)
    assert await storage.head("new") == Position(0, "")
    assert await storage.read("new") == []
