"""A node's pub/sub connection to the cluster's channels, kept alive.

Subscribed to the node's own channel and the all-nodes channel. When nothing
arrives for ``probe`` seconds it sends ``PING``; if the answer does not come
within as long again, the connection is declared dead and replaced: a
half-open socket (a proxy that stopped forwarding) would otherwise look like
a quiet channel. Any connection error also replaces it, after ``retry``
seconds. Messages published meanwhile are lost (pub/sub is at most once):
the cluster's users wait for answers with a timeout and have a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import TimeoutError as RedisTimeoutError

from scribeline.cluster.redis_scripts import UNREACHABLE

__all__ = ["Listener"]

log = logging.getLogger(__name__)


class Listener:
    """Follows ``channels`` for as long as ``run`` runs, passing each message's data
    to ``receive``. ``listening`` is set while it is subscribed."""

    def __init__(
        self,
        client: Redis,
        channels: tuple[str, ...],
        receive: Callable[[bytes], None],
        *,
        probe: float,
        retry: float,
    ) -> None:
        self.listening = asyncio.Event()
        self._client = client
        self._channels = channels
        self._receive = receive
        self._probe = probe
        self._retry = retry
        self._closed = False

    def close(self) -> None:
        """Stop at the next message or probe (``run``'s task is cancelled as well)."""
        self._closed = True

    async def run(self) -> None:
        # The loops also check ``_closed``: redis-py can turn a cancellation that
        # lands in a read into a timeout, which is caught here as a lost connection.
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await self._follow(pubsub)
            except UNREACHABLE as exc:
                log.info("cluster: pub/sub connection lost (%s); reconnecting", type(exc).__name__)
            except Exception:
                log.exception("cluster: pub/sub listener failed; reconnecting")
            finally:
                self.listening.clear()
                with contextlib.suppress(*UNREACHABLE):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if not self._closed:
                await asyncio.sleep(self._retry)  # reconnect cadence, not a condition

    async def _follow(self, pubsub: PubSub) -> None:
        await pubsub.subscribe(*self._channels)
        unanswered = False
        while not self._closed:
            message = await pubsub.get_message(timeout=self._probe)
            if message is None:
                if unanswered:
                    raise RedisTimeoutError("pub/sub probe unanswered")
                await pubsub.ping()
                unanswered = True
                continue
            unanswered = False
            kind = message["type"]
            if kind == "message":
                self._receive(message["data"])
            elif kind == "subscribe" and message["data"] == len(self._channels):
                self.listening.set()
