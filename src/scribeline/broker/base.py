"""The broker interface: publish bytes to a channel, deliver them to subscribers.

Contract (checked by ``tests/contract``): a message published to a channel is
delivered to the process's ``deliver`` callback once for each publish while
the channel is subscribed, in publish order per channel and publishing
process; an unsubscribed channel delivers nothing.

A broker may lose messages (a reconnect, a restart, an overflowing buffer).
It then calls ``on_gap``: "messages of any subscribed channel may have been
missed". The hub answers by comparing its positions with storage, which is
the system of record; the broker never is. ``subscribe`` returns once the
subscription is in place, or, when the broker is disconnected, once it is
recorded: the reconnect that puts it in place then calls ``on_gap``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from scribeline.events import StoredEvent

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Deliver",
    "OnGap",
    "org_channel",
    "pack",
    "unpack",
    "unpack_with_meta",
]


def org_channel(org_id: int) -> str:
    """The channel that carries every event of one organization (the firehose)."""
    return f"org:{org_id}"


#: Called with (channel, payload) for every message on a subscribed channel.
Deliver = Callable[[str, bytes], None]

#: Called when messages may have been lost (after a reconnect, an overflow).
OnGap = Callable[[], None]


class BrokerUnavailable(ConnectionError):
    """The broker cannot be reached: the message was not (or maybe not) published."""


class Broker(ABC):
    """Carries packed events between the processes of a deployment."""

    #: Whether ``publish`` is a function call within this process (no I/O, never
    #: waits): publishers then call it inline, so local subscribers have an event
    #: before its append is acknowledged. Otherwise they queue (``ingest.publish``).
    in_process: bool = False

    @abstractmethod
    async def start(self, deliver: Deliver, on_gap: OnGap | None = None) -> None:
        """Connect; deliver every message of subscribed channels to ``deliver``,
        and call ``on_gap`` whenever some may have been lost."""

    @abstractmethod
    async def publish(self, channel: str, payload: bytes) -> None:
        """Publish one message; ``BrokerUnavailable`` if the broker cannot be reached."""

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish (channel, payload) pairs in order, in one round trip where the
        backend can; ``BrokerUnavailable`` if the broker cannot be reached."""
        for channel, payload in messages:
            await self.publish(channel, payload)

    @abstractmethod
    async def subscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the broker cannot be reached or cannot deliver now."""

    @abstractmethod
    async def close(self) -> None: ...

    def counters(self) -> dict[str, int]:
        """Monotonic counters for metrics (reconnects, dropped messages, ...)."""
        return {}


def pack(event: StoredEvent, meta: dict[str, Any] | None = None) -> bytes:
    """The broker's wire form of a stored event, with optional routing metadata."""
    message = {
        "s": event.stream,
        "q": event.seq,
        "e": event.epoch,
        "t": event.type,
        "ts": event.ts,
        "c": event.closes,
        "d": event.data,
    }
    if meta:
        message["m"] = meta
    return orjson.dumps(message)


def _event(m: dict[str, Any]) -> StoredEvent:
    return StoredEvent(m["s"], m["q"], m["t"], m["ts"], m["d"], m["c"], m.get("e", ""))


def unpack(payload: bytes) -> StoredEvent:
    """Inverse of :func:`pack` (the event only)."""
    return _event(orjson.loads(payload))


def unpack_with_meta(payload: bytes) -> tuple[StoredEvent, dict[str, Any]]:
    """Inverse of :func:`pack`: the event and its routing metadata."""
    m = orjson.loads(payload)
    return _event(m), m.get("m") or {}
