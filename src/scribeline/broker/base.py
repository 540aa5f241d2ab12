"""The broker interface: publish bytes to a channel, deliver them to subscribers.

Contract (checked by ``tests/contract``): a message published to a channel is
delivered to the process's ``deliver`` callback once for each publish while
the channel is subscribed, in publish order per channel; an unsubscribed
channel delivers nothing. A broker may lose messages (a reconnect, a restart):
the hub detects gaps by seq and reads them from storage, so the broker is
never the system of record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import orjson

from scribeline.events import StoredEvent

__all__ = ["Broker", "Deliver", "org_channel", "pack", "unpack", "unpack_with_meta"]


def org_channel(org_id: int) -> str:
    """The channel that carries every event of one organization (the firehose)."""
    return f"org:{org_id}"


#: Called with (channel, payload) for every message on a subscribed channel.
Deliver = Callable[[str, bytes], None]


class Broker(ABC):
    """Carries packed events between the processes of a deployment."""

    @abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Connect; deliver every message of subscribed channels to ``deliver``."""

    @abstractmethod
    async def publish(self, channel: str, payload: bytes) -> None: ...

    @abstractmethod
    async def subscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the broker cannot be reached."""

    @abstractmethod
    async def close(self) -> None: ...


def pack(event: StoredEvent, meta: dict[str, Any] | None = None) -> bytes:
    """The broker's wire form of a stored event, with optional routing metadata."""
    message = {
        "s": event.stream,
        "q": event.seq,
        "t": event.type,
        "ts": event.ts,
        "c": event.closes,
        "d": event.data,
    }
    if meta:
        message["m"] = meta
    return orjson.dumps(message)


def unpack(payload: bytes) -> StoredEvent:
    """Inverse of :func:`pack` (the event only)."""
    m = orjson.loads(payload)
    return StoredEvent(m["s"], m["q"], m["t"], m["ts"], m["d"], m["c"])


def unpack_with_meta(payload: bytes) -> tuple[StoredEvent, dict[str, Any]]:
    """Inverse of :func:`pack`: the event and its routing metadata."""
    m = orjson.loads(payload)
    return StoredEvent(m["s"], m["q"], m["t"], m["ts"], m["d"], m["c"]), m.get("m") or {}
