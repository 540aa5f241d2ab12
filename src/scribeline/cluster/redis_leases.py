"""Renewing and giving back one node's leases in Redis.

A renewal runs every lease this node holds through one pipeline. It only
extends what is still in Redis: it runs a round trip after it looked at
what the node holds, so re-adding would undo a release made meanwhile. It
re-adds (*re-asserts*) only when told to: after an outage, or when an
ordinary renewal found a lease missing that the node still holds (Redis lost
its data without the node noticing). A re-assertion then gives back once
more what was released while it was on its way, since its re-add may have
landed after that release. Every call raises ``OUTAGE`` errors for the
caller to degrade on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from scribeline.cluster.base import OnLost, split_member
from scribeline.cluster.held import Held, Pair, call_lost
from scribeline.cluster.redis_scripts import RELEASE, RENEW_CLAIM, RENEW_SLOTS

__all__ = ["Leases"]

#: RENEW_CLAIM's answers.
_TAKEN, _MISSING = 0, 2

Slots = list[tuple[str, list[str]]]
Claims = list[tuple[str, tuple[str, OnLost]]]


class Leases:
    """What one node holds (``held``), kept in Redis."""

    def __init__(
        self,
        client: Redis,
        held: Held,
        *,
        key: Callable[[str, str], str],
        full: Callable[[str], str],
        lease_ms: int,
        node_key: str,
    ) -> None:
        self._client = client
        self._held = held
        self._key = key
        self._full = full
        self._lease_ms = lease_ms
        self._node_key = node_key
        self._renew_slots = client.register_script(RENEW_SLOTS)
        self._renew_claim = client.register_script(RENEW_CLAIM)
        self._release = client.register_script(RELEASE)

    async def release(self, key: str, member: str, client: Any = None) -> None:
        """Drop ``member``'s slot on ``key``, and its claim if it holds it."""
        await self._release(
            keys=[self._key("lim", key), self._key("own", key)],
            args=[self._full(member)],
            client=client or self._client,
        )

    async def release_all(self, pairs: list[Pair]) -> None:
        """:meth:`release` every pair, in one round trip."""
        if not pairs:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for key, member in pairs:
                await self.release(key, member, pipe)
            await pipe.execute()

    async def renew(self, reassert: bool) -> bool:
        """Renew (or with ``reassert``, re-add) every lease held and send the releases
        Redis has not heard of; True if a lease still held was found missing."""
        held = self._held
        slots = [(k, sorted(ms)) for k, ms in held.slots.items() if ms]
        claims = list(held.claims.items())
        unreleased = list(held.unreleased)
        meanwhile: set[Pair] = set()
        if reassert:
            held.released_meanwhile = meanwhile
        try:
            results = await self._pipeline(slots, claims, unreleased, reassert)
            if meanwhile:
                await self.release_all(sorted(meanwhile))
        except BaseException:
            held.remember_unreleased(meanwhile)  # our re-adds may have reached Redis
            raise
        finally:
            held.released_meanwhile = None
        held.unreleased.difference_update(unreleased)
        return self._settle(slots, claims, results)

    async def _pipeline(
        self, slots: Slots, claims: Claims, unreleased: list[Pair], reassert: bool
    ) -> list[Any]:
        readd = "1" if reassert else "0"
        async with self._client.pipeline(transaction=False) as pipe:
            for key, members in slots:
                await self._renew_slots(
                    keys=[self._key("lim", key)],
                    args=[self._lease_ms, readd, *(self._full(m) for m in members)],
                    client=pipe,
                )
            for key, (member, _) in claims:
                await self._renew_claim(
                    keys=[self._key("own", key)],
                    args=[self._full(member), self._lease_ms, readd],
                    client=pipe,
                )
            for key, member in unreleased:
                await self.release(key, member, pipe)
            # A write, not a PING: a read-only replica must not pass for recovered.
            await pipe.set(self._node_key, b"1", px=self._lease_ms)
            return list(await pipe.execute())

    def _settle(self, slots: Slots, claims: Claims, results: list[Any]) -> bool:
        held = self._held
        missing = False
        for (key, _), gone in zip(slots, results, strict=False):
            mine = held.slots.get(key, ())
            missing |= any(split_member(_text(full))[1] in mine for full in gone)
        for (key, claim), state in zip(claims, results[len(slots) :], strict=False):
            if held.claims.get(key) is not claim:
                continue  # released or claimed again meanwhile
            if state == _TAKEN:
                del held.claims[key]  # another node claimed it while we were away
                call_lost(claim[1])
            elif state == _MISSING:
                missing = True
        return missing


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
