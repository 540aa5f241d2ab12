"""Brokers carry stored events between server processes, chosen by URL."""

from __future__ import annotations

from scribeline.broker.base import (
    Broker,
    BrokerUnavailable,
    Deliver,
    OnGap,
    org_channel,
    pack,
    unpack,
    unpack_with_meta,
)

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Deliver",
    "OnGap",
    "open_broker",
    "org_channel",
    "pack",
    "unpack",
    "unpack_with_meta",
]


def open_broker(url: str, *, probe_interval: float = 15.0, timeout: float = 3.0) -> Broker:
    """The broker for ``url``: ``memory://`` for a single process, ``redis://host:port/db``
    (or ``rediss://``, ``unix://``) for several. Redis is imported only when used.

    ``probe_interval``: idle seconds before a pub/sub connection is probed;
    ``timeout``: seconds any Redis round trip (connect, publish, probe) may take.
    """
    if url.startswith("memory://"):
        from scribeline.broker.memory import MemoryBroker

        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from scribeline.broker.redis import RedisBroker

        return RedisBroker(url, probe_interval=probe_interval, timeout=timeout)
    raise ValueError(f"Unsupported broker URL scheme: {url.split(':', 1)[0]!r}")
