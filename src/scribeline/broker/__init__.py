"""Brokers carry stored events between server processes, chosen by URL."""

from __future__ import annotations

from scribeline.broker.base import Broker, Deliver, org_channel, pack, unpack, unpack_with_meta

__all__ = [
    "Broker",
    "Deliver",
    "open_broker",
    "org_channel",
    "pack",
    "unpack",
    "unpack_with_meta",
]


def open_broker(url: str) -> Broker:
    """The broker for ``url``: ``memory://`` for a single process."""
    if url.startswith("memory://"):
        from scribeline.broker.memory import MemoryBroker

        return MemoryBroker()
    raise ValueError(f"Unsupported broker URL scheme: {url.split(':', 1)[0]!r}")
