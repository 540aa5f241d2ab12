"""Publishing stored events: to their stream's channel and their organization's.

Each event goes to its stream channel (per-call and per-campaign
subscribers) and to the organization channel with the metadata the event
stream filters on (call SID, assistant, campaign), so one broker subscription
per organization serves every event-stream subscriber of that organization.

An append's acknowledgement never waits on a networked broker: its events
join one ordered queue that a single task sends, everything queued in one
round trip (batches grow with load, as group commit does). The in-process
broker is called inline instead, so local subscribers have an event before
its append is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from scribeline.broker import Broker, BrokerUnavailable, org_channel, pack
from scribeline.events import StoredEvent
from scribeline.log_context import detached
from scribeline.metrics import stream_kind

__all__ = ["Publisher"]

log = logging.getLogger(__name__)

#: Least seconds between two warnings about a broker that cannot be reached.
WARN_EVERY = 5.0
#: Messages queued at most; past it the oldest are dropped (nodes still find
#: those events in storage, at their next position check).
QUEUE_LIMIT = 50_000
#: Messages sent in one broker round trip at most.
BATCH = 1_000
#: Seconds between two attempts to publish what the broker did not take.
RETRY_DELAY = 0.5
#: Seconds a message is tried for. Older ones are dropped: by then the nodes
#: have had a broker reconnect (and its position check) or will find the events
#: at their periodic check, so sending them only repeats what they hold.
MAX_AGE = 5.0
#: Seconds ``close`` waits for the queue to go out.
CLOSE_GRACE = 1.0

#: (queued at, channel, payload)
_Message = tuple[float, str, bytes]


class Publisher:
    """Publishes events that storage has made durable.

    A batch the broker does not take stays at the head of the queue and is
    tried again every ``RETRY_DELAY`` seconds, so other nodes get a lost *last*
    event of a stream within moments rather than at their next position check;
    messages older than ``MAX_AGE`` or past ``QUEUE_LIMIT`` are dropped and
    counted. Publishing an event twice is harmless: every node drops a seq it
    has already passed.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._warned_at = float("-inf")
        self._queue: deque[_Message] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        #: Broker round trips that failed (the events are stored all the same).
        self.failures = 0
        #: Messages never published (too old, or past the queue's bound).
        self.dropped = 0
        #: Events handed over to publish (stored), by stream kind, and messages the
        #: broker took, by channel kind (``org`` too), for metrics.
        self.stored: Counter[str] = Counter()
        self.published: Counter[str] = Counter()

    async def publish(
        self, org_id: int, events: Iterable[StoredEvent], meta: dict[str, Any]
    ) -> None:
        """Publish ``events`` to their stream's and organization's channels, in
        order. Returns at once on a networked broker; a broker that cannot be
        reached is logged, not raised: the events are stored (acknowledged)."""
        channel = org_channel(org_id)
        messages: list[tuple[str, bytes]] = []
        stored = self.stored
        for event in events:
            payload = pack(event, meta)  # stream subscribers ignore the metadata
            messages += ((event.stream, payload), (channel, payload))
            stored[stream_kind(event.stream)] += 1
        if not messages or self._closed:
            return
        if self._broker.in_process:
            try:
                await self._broker.publish_many(messages)
            except BrokerUnavailable as exc:
                self.failures += 1
                self._warn(f"events stored but not published: {exc}")
            else:
                self._count(messages)
            return
        self._enqueue(messages)

    def _enqueue(self, messages: list[tuple[str, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._queue
        queue.extend((now, channel, payload) for channel, payload in messages)
        excess = len(queue) - QUEUE_LIMIT
        if excess > 0:
            for _ in range(excess):
                queue.popleft()
            self._drop(excess, "the queue is full")
        self._drained.clear()
        self._wake.set()
        if self._sender is None:
            # It serves every publisher from now on: no request's id on its lines.
            self._sender = loop.create_task(self._send(), context=detached())

    async def _send(self) -> None:
        """The one task that publishes, in queue order."""
        queue, loop = self._queue, asyncio.get_running_loop()
        while True:
            self._expire(loop.time() - MAX_AGE)
            if not queue:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [queue.popleft() for _ in range(min(BATCH, len(queue)))]
            sent = [(c, p) for _, c, p in batch]
            try:
                await self._broker.publish_many(sent)
                self._count(sent)
            except BrokerUnavailable as exc:
                self.failures += 1
                queue.extendleft(reversed(batch))  # ahead of what came since
                self._warn(f"events stored but not yet published (retrying): {exc}")
                await asyncio.sleep(RETRY_DELAY)
            except Exception:
                log.exception("publishing failed; %d messages dropped", len(batch))
                self.dropped += len(batch)

    def _count(self, messages: list[tuple[str, bytes]]) -> None:
        published = self.published
        for channel, _ in messages:
            published[stream_kind(channel)] += 1

    def _expire(self, before: float) -> None:
        queue, expired = self._queue, 0
        while queue and queue[0][0] < before:
            queue.popleft()
            expired += 1
        if expired:
            self._drop(expired, f"older than {MAX_AGE:g} s")

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        self._warn(f"{count} messages not published ({why}); nodes read them from storage")

    def _warn(self, text: str) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._warned_at >= WARN_EVERY:  # an outage fails every publish: say it once
            self._warned_at = now
            log.warning("%s", text)

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Send what is queued (for at most ``grace`` seconds), then stop; what is
        left is in storage, where nodes find it. Later publishes are ignored."""
        self._closed = True
        sender, self._sender = self._sender, None
        if sender is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._drained.wait()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
