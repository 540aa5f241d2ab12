"""The in-process broker: publish hands the payload straight to the hub.

It never loses a message, so it never calls ``on_gap``.
"""

from __future__ import annotations

from scribeline.broker.base import Broker, Deliver, OnGap

__all__ = ["MemoryBroker"]


class MemoryBroker(Broker):
    """Delivers synchronously within ``publish``, so per-channel order is publish order."""

    in_process = True

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._channels: set[str] = set()

    async def start(self, deliver: Deliver, on_gap: OnGap | None = None) -> None:
        self._deliver = deliver

    async def publish(self, channel: str, payload: bytes) -> None:
        if self._deliver is not None and channel in self._channels:
            self._deliver(channel, payload)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.clear()
        self._deliver = None
