"""Publishing stored events: to their stream's channel and their organization's.

Each event goes to its stream channel (per-call and per-campaign
subscribers) and to the organization channel with the metadata the event
stream filters on (call SID, assistant, campaign), so one broker subscription
per organization serves every event-stream subscriber of that organization.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from scribeline.broker import Broker, BrokerUnavailable, org_channel, pack

__all__ = ["Publisher"]

from scribeline.events import StoredEvent

log = logging.getLogger(__name__)

#: Least seconds between two warnings about a broker that cannot be reached.
WARN_EVERY = 5.0
#: Messages kept to publish again once the broker is back; past it the oldest go
#: (nodes still find those events in storage, at their next position check).
UNSENT_LIMIT = 10_000
#: Seconds between two attempts to publish what the broker did not take.
RETRY_DELAY = 0.5


class Publisher:
    """Publishes events that storage has made durable.

    A publish the broker does not take is kept and tried again every
    ``RETRY_DELAY`` seconds, so other nodes get a lost *last* event of a stream
    within moments rather than at their next position check. Publishing an
    event twice is harmless: every node drops a seq it has already passed.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._warned_at = float("-inf")
        self._unsent: deque[tuple[str, bytes]] = deque(maxlen=UNSENT_LIMIT)
        self._retrying: asyncio.Task[None] | None = None
        #: Publishes the broker did not take at once (the events are stored all the same).
        self.failures = 0

    async def publish(
        self, org_id: int, events: Iterable[StoredEvent], meta: dict[str, Any]
    ) -> None:
        """Publish ``events`` to their stream's and organization's channels, in one
        broker round trip. A broker that cannot be reached is logged, not raised:
        the events are stored (acknowledged) and published again later."""
        channel = org_channel(org_id)
        messages: list[tuple[str, bytes]] = []
        for event in events:
            payload = pack(event, meta)  # stream subscribers ignore the metadata
            messages += ((event.stream, payload), (channel, payload))
        if not messages:
            return
        try:
            await self._broker.publish_many(messages)
        except BrokerUnavailable as exc:
            self.failures += 1
            self._unsent.extend(messages)
            if self._retrying is None:
                self._retrying = asyncio.get_running_loop().create_task(self._retry())
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning("events stored but not yet published (retrying): %s", exc)

    async def _retry(self) -> None:
        try:
            while self._unsent:
                await asyncio.sleep(RETRY_DELAY)
                unsent = self._unsent
                batch = [unsent.popleft() for _ in range(min(1000, len(unsent)))]
                try:
                    await self._broker.publish_many(batch)
                except BrokerUnavailable:
                    unsent.extendleft(reversed(batch))  # ahead of newer failures
        finally:
            self._retrying = None

    async def close(self) -> None:
        """Stop retrying (what is left is in storage, where nodes find it)."""
        retrying, self._retrying = self._retrying, None
        if retrying is not None:
            retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retrying
