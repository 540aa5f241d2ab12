"""Keeping a producer's appends in the order it sent them.

A producer WebSocket pipelines: each message's append runs as its own task,
so that appends which arrive together share one group commit. Storage keeps
the order in which ``append`` is *called* (its contract), but the work before
that call (checking the assistant's transcription switch, which may read
storage on a cache miss) can suspend for different lengths of time on a
driver that really suspends (PostgreSQL), and message 2 would overtake
message 1. A :class:`Baton` makes the hand-over to storage explicit: each
message takes a :class:`Turn` in message order, does its checks concurrently
with the others, then waits for the previous turn to have handed its events
to storage before handing over its own.

The hand-over is the start of the storage call: :meth:`Turn.hand_over`
schedules it as a task and only then lets the next turn go. asyncio runs
ready callbacks first in, first out, so the task's first step (where storage
queues the write, before it first suspends) runs before the next turn's
waiter resumes. Appends are thus queued in message order without one waiting
for another's commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["Baton", "Turn"]

T = TypeVar("T")


class Turn:
    """One message's place in the order of hand-overs to storage."""

    __slots__ = ("_mine", "_previous")

    def __init__(self, previous: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        self._previous = previous
        self._mine = mine

    async def hand_over(self, storage_call: Awaitable[T]) -> T:
        """Start ``storage_call`` after every earlier turn started theirs; its result.

        ``storage_call`` must be an un-started coroutine that queues its write
        before it first suspends (the storage contract's ordering rule).
        """
        try:
            if self._previous is not None and not self._previous.done():
                # Shielded: this task being cancelled must not cancel the chain.
                await asyncio.shield(self._previous)
            task = asyncio.ensure_future(storage_call)
        except BaseException:
            if asyncio.iscoroutine(storage_call):
                storage_call.close()  # never started: no "never awaited" warning
            raise
        finally:
            self.release()
        return await task

    def release(self) -> None:
        """Let the next turn go (idempotent); a turn that never reaches storage
        (its checks refused the message) must still be released."""
        if not self._mine.done():
            self._mine.set_result(None)


class Baton:
    """Hands out turns in the order :meth:`next` is called (message order)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: asyncio.Future[None] | None = None

    def next(self) -> Turn:
        mine = asyncio.get_running_loop().create_future()
        turn = Turn(self._last, mine)
        self._last = mine
        return turn
