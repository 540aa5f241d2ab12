"""A producer's appends reach storage in message order, whatever their checks wait for."""

from __future__ import annotations

import asyncio

from scribeline.ingest.ordering import Baton, Turn


class Storage:
    """Queues writes at the first step of ``append`` (the storage contract) and
    completes them only when told to."""

    def __init__(self) -> None:
        self.queued: list[int] = []
        self.done: dict[int, asyncio.Future[int]] = {}
        self._grew = asyncio.Event()

    async def queued_at_least(self, count: int) -> None:
        while len(self.queued) < count:
            self._grew.clear()
            await asyncio.wait_for(self._grew.wait(), 1)

    async def append(self, n: int) -> int:
        self.queued.append(n)  # before the first suspension
        self._grew.set()
        self.done[n] = asyncio.get_running_loop().create_future()
        return await self.done[n]


async def message(storage: Storage, n: int, turn: Turn, check: asyncio.Future[None]) -> int:
    await check  # the pre-append check (a cache miss on a switch, say)
    return await turn.hand_over(storage.append(n))


async def test_checks_finishing_in_reverse_still_queue_in_message_order() -> None:
    """Message 9's check finishes first and message 0's last: storage still sees
    0, 1, ..., 9, and none waited for an earlier one's commit to be queued."""
    storage, baton = Storage(), Baton()
    checks = [asyncio.get_running_loop().create_future() for _ in range(10)]
    tasks = [asyncio.create_task(message(storage, n, baton.next(), checks[n])) for n in range(10)]
    for check in reversed(checks):
        check.set_result(None)
        await asyncio.sleep(0)
    await storage.queued_at_least(10)
    assert storage.queued == list(range(10))
    assert not any(task.done() for task in tasks), "an append waited for a commit"
    for n, done in storage.done.items():
        done.set_result(n)
    assert await asyncio.gather(*tasks) == list(range(10))


async def test_without_the_baton_a_slow_check_is_overtaken() -> None:
    """The failure this prevents: the same messages with no turns reach storage in
    the order their checks finished."""
    storage = Storage()
    checks = [asyncio.get_running_loop().create_future() for _ in range(3)]

    async def unordered(n: int) -> int:
        await checks[n]
        return await storage.append(n)

    tasks = [asyncio.create_task(unordered(n)) for n in range(3)]
    for check in reversed(checks):
        check.set_result(None)
        await asyncio.sleep(0)
    assert storage.queued == [2, 1, 0]
    for n, done in storage.done.items():
        done.set_result(n)
    await asyncio.gather(*tasks)


async def test_a_refused_or_cancelled_turn_does_not_hold_up_the_next() -> None:
    """A message refused before storage releases its turn; a task cancelled before
    it ever ran is released by its owner; later messages go on."""
    storage, baton = Storage(), Baton()
    refused = baton.next()
    cancelled = baton.next()
    last = baton.next()
    refused.release()
    cancelled.release()
    go = asyncio.get_running_loop().create_future()
    go.set_result(None)
    task = asyncio.create_task(message(storage, 3, last, go))
    await storage.queued_at_least(1)
    storage.done[3].set_result(3)
    assert await task == 3


async def test_cancelling_a_waiting_turn_does_not_break_the_chain() -> None:
    """A turn waiting for its predecessor is cancelled: the predecessor and the
    turn after it still hand over normally."""
    storage, baton = Storage(), Baton()
    first, second, third = baton.next(), baton.next(), baton.next()
    hold = asyncio.get_running_loop().create_future()
    go = asyncio.get_running_loop().create_future()
    go.set_result(None)
    t1 = asyncio.create_task(message(storage, 1, first, hold))
    t2 = asyncio.create_task(message(storage, 2, second, go))
    t3 = asyncio.create_task(message(storage, 3, third, go))
    await asyncio.sleep(0)
    t2.cancel()
    hold.set_result(None)
    await storage.queued_at_least(2)
    assert storage.queued == [1, 3]
    for n, done in storage.done.items():
        done.set_result(n)
    assert (await t1, await t3) == (1, 3)
    assert t2.cancelled()
