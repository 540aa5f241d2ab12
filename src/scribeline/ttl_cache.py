"""A small cache whose entries expire: for look-ups made on every request."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TtlCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded map whose entries expire ``ttl`` seconds after they were stored;
    past ``size`` entries the oldest stored goes."""

    def __init__(self, ttl: float, size: int):
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        return None

    def put(self, key: K, value: V, now: float) -> None:
        self._entries[key] = (now + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def drop_where(self, doomed: Callable[[V], bool]) -> None:
        for key in [k for k, (_, v) in self._entries.items() if doomed(v)]:
            del self._entries[key]
