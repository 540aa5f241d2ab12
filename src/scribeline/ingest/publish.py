"""Publishing stored events: to their stream's channel and their organization's.

Each event goes to its stream channel (per-call and per-campaign
subscribers) and to the organization channel with the metadata the event
stream filters on (call SID, assistant, campaign), so one broker subscription
per organization serves every event-stream subscriber of that organization.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scribeline.broker import Broker, org_channel, pack

__all__ = ["Publisher"]

from scribeline.events import StoredEvent


class Publisher:
    """Publishes events that storage has made durable."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def publish(
        self, org_id: int, events: Iterable[StoredEvent], meta: dict[str, Any]
    ) -> None:
        channel = org_channel(org_id)
        for event in events:
            payload = pack(event, meta)  # stream subscribers ignore the metadata
            await self._broker.publish(event.stream, payload)
            await self._broker.publish(channel, payload)
