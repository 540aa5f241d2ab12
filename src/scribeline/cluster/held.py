"""What one node holds in a shared cluster, as the node itself knows it.

The Redis cluster renews these leases, answers from them alone while Redis
cannot be used (node-local limits, claims and turns), and keeps what it gave
back that Redis may not have heard of: releases made while Redis was
unreachable, and releases made while a re-assertion (which re-adds what the
node holds) was on its way, since that re-add may land after them.
Members are unqualified here (the cluster adds the node id).
"""

from __future__ import annotations

import logging

from scribeline.cluster.base import OnLost

__all__ = ["MAX_UNRELEASED", "Held", "Pair", "call_lost"]

log = logging.getLogger(__name__)

#: Releases remembered for Redis (beyond this, their leases just run out).
MAX_UNRELEASED = 100_000
#: Node-local turns kept before the ended ones are swept.
_TURNS_SWEEP = 10_000

#: A (key, member) pair.
Pair = tuple[str, str]


class Held:
    """A node's slots, claims and turns, and the releases Redis still has to hear of."""

    def __init__(self) -> None:
        self.slots: dict[str, set[str]] = {}
        self.claims: dict[str, tuple[str, OnLost]] = {}
        self.turns: dict[str, float] = {}
        #: Released while Redis could not be told, or asked of Redis by a request
        #: whose answer was lost (it may have landed): given back at the next chance.
        self.unreleased: set[Pair] = set()
        #: Released while a re-assertion is under way (None: none is).
        self.released_meanwhile: set[Pair] | None = None

    def add_slot(self, key: str, member: str) -> None:
        self.slots.setdefault(key, set()).add(member)
        self._taken(key, member)

    def take_claim(self, key: str, member: str, on_lost: OnLost) -> tuple[str, OnLost] | None:
        """Hold ``key``'s claim; the claim this node held before, if any."""
        previous = self.claims.get(key)
        self.claims[key] = (member, on_lost)
        self._taken(key, member)
        return previous

    def _taken(self, key: str, member: str) -> None:
        # Taken again: a release of it still to be sent would now undo the new one.
        self.unreleased.discard((key, member))
        if self.released_meanwhile is not None:
            self.released_meanwhile.discard((key, member))

    def drop(self, key: str, member: str) -> None:
        """Forget ``member``'s slot on ``key`` and its claim, if it holds it."""
        mine = self.slots.get(key)
        if mine is not None:
            mine.discard(member)
            if not mine:
                del self.slots[key]
        claim = self.claims.get(key)
        if claim is not None and claim[0] == member:
            del self.claims[key]
        if self.released_meanwhile is not None:
            self.released_meanwhile.add((key, member))

    def remember_unreleased(self, pairs: set[Pair] | list[Pair]) -> None:
        """Releases to send once Redis answers again."""
        for pair in pairs:
            if len(self.unreleased) >= MAX_UNRELEASED:
                return
            self.unreleased.add(pair)

    def local_acquire(self, key: str, limit: int, member: str) -> bool:
        """A slot by this node's count alone (Redis unreachable)."""
        mine = self.slots.setdefault(key, set())
        if member in mine or len(mine) < limit:
            mine.add(member)
            self._taken(key, member)
            return True
        if not mine:
            del self.slots[key]
        return False

    def local_turn(self, key: str, interval: float, now: float) -> float:
        """A turn by this node's count alone: 0.0 if taken, else seconds to wait."""
        ends = self.turns.get(key, 0.0)
        if ends > now:
            return ends - now
        if len(self.turns) > _TURNS_SWEEP:
            self.turns = {k: e for k, e in self.turns.items() if e > now}
        self.turns[key] = now + interval
        return 0.0

    def everything(self) -> list[Pair]:
        """Every (key, member) this node holds a slot or a claim for."""
        held = [(k, m) for k, ms in self.slots.items() for m in ms]
        return held + [(k, m) for k, (m, _) in self.claims.items()]

    def clear(self) -> None:
        self.slots.clear()
        self.claims.clear()


def call_lost(on_lost: OnLost) -> None:
    """Run a displaced holder's handler; a failing one is logged, not raised."""
    try:
        on_lost()
    except Exception:
        log.exception("a lost claim's handler failed")
