"""Event-stream subscriptions, indexed by what they match (PROTOCOL.md section 3).

A subscription is a topic and a filter key (``org_events.filter_key``). The
index maps topic -> key -> subscribers, so dispatching an event looks up the
handful of keys the event has (``org_events.match_keys``) and costs the same
however many subscriptions that match nothing exist. Subscriptions are
bounded per subscriber and in total (one organization on one process).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable
from typing import Generic, TypeVar

from scribeline.errors import RateLimited

__all__ = ["SubscriptionIndex"]

S = TypeVar("S", bound=Hashable)


class SubscriptionIndex(Generic[S]):
    """Who wants which (topic, key); ``len()`` is the number of subscribers."""

    __slots__ = ("_by_topic", "_count", "_of", "_per_subscriber", "_total")

    def __init__(self, per_subscriber: int, total: int) -> None:
        self._per_subscriber = per_subscriber
        self._total = total
        self._by_topic: dict[str, dict[str, set[S]]] = {}
        self._of: dict[S, set[tuple[str, str]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return len(self._of)

    @property
    def size(self) -> int:
        """Subscriptions held, all subscribers together."""
        return self._count

    def add(self, subscriber: S, topic: str, key: str) -> None:
        """Subscribe (again: nothing changes); ``RateLimited`` past either bound."""
        mine = self._of.get(subscriber)
        if mine is not None and (topic, key) in mine:
            return
        if mine is not None and len(mine) >= self._per_subscriber:
            raise RateLimited(f"At most {self._per_subscriber} subscriptions per connection")
        if self._count >= self._total:
            raise RateLimited(
                f"At most {self._total} subscriptions per organization on this server"
            )
        self._of.setdefault(subscriber, set()).add((topic, key))
        self._by_topic.setdefault(topic, {}).setdefault(key, set()).add(subscriber)
        self._count += 1

    def remove(self, subscriber: S, topic: str, key: str) -> None:
        mine = self._of.get(subscriber)
        if mine is None or (topic, key) not in mine:
            return
        mine.remove((topic, key))
        if not mine:
            del self._of[subscriber]
        by_key = self._by_topic[topic]
        subscribers = by_key[key]
        subscribers.remove(subscriber)
        if not subscribers:
            del by_key[key]
            if not by_key:
                del self._by_topic[topic]
        self._count -= 1

    def drop(self, subscriber: S) -> None:
        """Remove every subscription of ``subscriber``."""
        for topic, key in list(self._of.get(subscriber, ())):
            self.remove(subscriber, topic, key)

    def match(self, topic: str, keys: Iterable[str]) -> Collection[S]:
        """The subscribers of ``topic`` under any of ``keys``, each once."""
        by_key = self._by_topic.get(topic)
        if not by_key:
            return ()
        found: set[S] | None = None
        single: set[S] | None = None
        for key in keys:
            subscribers = by_key.get(key)
            if not subscribers:
                continue
            if single is None:
                single = subscribers
            else:
                found = (found or set(single)) | subscribers
        return found if found is not None else single or ()
