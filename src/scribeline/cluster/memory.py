"""The in-process cluster: one node, or several nodes of one process sharing a network.

A server with ``memory://`` is one node alone, and this behaves exactly as the
per-process counters, owner map and timestamps it replaces: its leases never
expire (a lone node cannot crash and leave its slots behind). Tests give
several nodes one :class:`MemoryNetwork` and a finite lease to run the
contract that the Redis cluster meets between processes; leases then expire
(monotonic time), so a node that stops renewing loses its slots as a crashed
Redis node would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from scribeline.cluster.base import (
    Cluster,
    OnLost,
    OnMessage,
    join_member,
    new_node_id,
    split_member,
)

__all__ = ["MemoryCluster", "MemoryNetwork"]

log = logging.getLogger(__name__)

#: Turns kept before expired ones are swept.
_TURNS_SWEEP = 10_000


class MemoryNetwork:
    """The shared state of the nodes of one process (what Redis holds between processes)."""

    def __init__(self) -> None:
        #: key -> full member -> lease expiry (monotonic)
        self.slots: dict[str, dict[str, float]] = {}
        #: key -> (full member, lease expiry)
        self.claims: dict[str, tuple[str, float]] = {}
        #: key -> end of the current turn
        self.turns: dict[str, float] = {}
        self.nodes: dict[str, MemoryCluster] = {}

    def live_slots(self, key: str, now: float) -> dict[str, float]:
        held = self.slots.get(key)
        if held is None:
            return {}
        for member in [m for m, expiry in held.items() if expiry <= now]:
            del held[member]
        if not held:
            del self.slots[key]
        return held

    def holder(self, key: str, now: float) -> str | None:
        claim = self.claims.get(key)
        if claim is None:
            return None
        if claim[1] <= now:
            del self.claims[key]
            return None
        return claim[0]


class MemoryCluster(Cluster):
    """One node; alone on its own network unless given a shared one."""

    def __init__(
        self,
        network: MemoryNetwork | None = None,
        *,
        node_id: str | None = None,
        lease: float = math.inf,
        renew: float = 20.0,
    ) -> None:
        self.node_id = node_id or new_node_id()
        self._net = network or MemoryNetwork()
        self._lease = lease
        self._renew = renew
        self._on_message: OnMessage | None = None
        #: What this node holds: key -> members (unqualified), key -> (member, on_lost).
        self._slots: dict[str, set[str]] = {}
        self._claims: dict[str, tuple[str, OnLost]] = {}
        self._task: asyncio.Task[None] | None = None
        self._net.nodes[self.node_id] = self

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        if math.isfinite(self._lease):
            self._task = asyncio.get_running_loop().create_task(self._renew_forever())

    async def acquire(self, key: str, limit: int, member: str) -> bool:
        now = time.monotonic()
        full = join_member(self.node_id, member)
        held = self._net.live_slots(key, now)
        if full not in held and len(held) >= limit:
            return False
        self._net.slots.setdefault(key, held)[full] = now + self._lease
        self._slots.setdefault(key, set()).add(member)
        return True

    async def release(self, key: str, member: str) -> None:
        full = join_member(self.node_id, member)
        mine = self._slots.get(key)
        if mine is not None:
            mine.discard(member)
            if not mine:
                del self._slots[key]
        held = self._net.slots.get(key)
        if held is not None:
            held.pop(full, None)
            if not held:
                del self._net.slots[key]
        claim = self._claims.get(key)
        if claim is not None and claim[0] == member:
            del self._claims[key]
        net_claim = self._net.claims.get(key)
        if net_claim is not None and net_claim[0] == full:
            del self._net.claims[key]

    async def claim(self, key: str, member: str, on_lost: OnLost) -> None:
        now = time.monotonic()
        full = join_member(self.node_id, member)
        previous = self._net.holder(key, now)
        self._net.claims[key] = (full, now + self._lease)
        local = self._claims.get(key)
        self._claims[key] = (member, on_lost)
        if local is not None and local[0] != member:
            _call(local[1])
        if previous is not None:
            node_id, old = split_member(previous)
            node = self._net.nodes.get(node_id)
            if node is not None and node is not self:
                node._lost(key, old)

    def _lost(self, key: str, member: str) -> None:
        claim = self._claims.get(key)
        if claim is not None and claim[0] == member:
            del self._claims[key]
            _call(claim[1])

    async def owner(self, key: str) -> str | None:
        holder = self._net.holder(key, time.monotonic())
        return None if holder is None else split_member(holder)[0]

    async def coalesce(self, key: str, interval: float) -> float:
        if interval <= 0:
            return 0.0
        now = time.monotonic()
        turns = self._net.turns
        ends = turns.get(key, 0.0)
        if ends > now:
            return ends - now
        if len(turns) > _TURNS_SWEEP:
            for k in [k for k, e in turns.items() if e <= now]:
                del turns[k]
        turns[key] = now + interval
        return 0.0

    async def send(self, node_id: str | None, payload: bytes) -> bool:
        if node_id is None:
            for each in list(self._net.nodes.values()):
                each._receive(payload)
            return True
        node = self._net.nodes.get(node_id)
        if node is None:
            return False
        node._receive(payload)
        return True

    def _receive(self, payload: bytes) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(payload)
        except Exception:
            log.exception("a cluster message handler failed")

    async def ping(self) -> None:
        return None

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._renew)  # the lease cadence, not a condition
            self._renew_all()

    def _renew_all(self) -> None:
        now = time.monotonic()
        until = now + self._lease
        for key, members in self._slots.items():
            held = self._net.slots.setdefault(key, {})
            for member in members:
                held[join_member(self.node_id, member)] = until
        for key, (member, on_lost) in list(self._claims.items()):
            full = join_member(self.node_id, member)
            holder = self._net.holder(key, now)
            if holder is None or holder == full:
                self._net.claims[key] = (full, until)
            else:  # taken while we were not renewing
                del self._claims[key]
                _call(on_lost)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for key, members in list(self._slots.items()):
            for member in list(members):
                await self.release(key, member)
        for key, (member, _) in list(self._claims.items()):
            await self.release(key, member)
        if self._net.nodes.get(self.node_id) is self:
            del self._net.nodes[self.node_id]
        self._on_message = None


def _call(on_lost: OnLost) -> None:
    try:
        on_lost()
    except Exception:
        log.exception("a lost claim's handler failed")
