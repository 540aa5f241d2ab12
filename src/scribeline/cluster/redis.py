"""The cluster on Redis: leases in keys, messages over pub/sub.

Keys (``{ns}`` is the namespace, ``sl`` unless told; the braces are hash tags,
so a key's slot set and claim live on one Redis Cluster shard):

- ``{ns}:lim:{key}``: a ZSET of members scored by lease expiry (ms, Redis's
  clock, so nodes' clocks never matter). One Lua script drops expired
  members, refuses when ``limit`` members remain and this one is not among them,
  else adds it (research note A2: a crashed node's entries expire by
  themselves; ``INCR``/``DECR`` counters would leak).
- ``{ns}:own:{key}``: the claim, the holder's ``node/member`` with a TTL;
  taken with ``SET ... GET`` so the displaced holder is known and told.
- ``{ns}:turn:{key}``: a turn, ``SET NX PX``.
- channels ``{ns}:cluster:node:{node id}`` (messages for one node) and
  ``{ns}:cluster:all``, followed by a :class:`Listener` (``redis_listen``).

Leases last ``lease`` seconds and are renewed every ``renew`` seconds for
everything this node holds, in one pipeline. Any Redis connection error or
timeout (``timeout`` seconds) turns the node *degraded*: it answers from
what it holds alone (slots it holds count against the limit; claims and turns
are its own) until a retry, every second, reaches Redis again; it then
re-asserts its leases and gives back what was released meanwhile. A lease
re-asserted after an outage is added even past the limit: the limit is
checked when a connection is admitted, never by closing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scribeline.cluster.base import (
    Cluster,
    ClusterDegraded,
    OnLost,
    OnMessage,
    join_member,
    new_node_id,
    split_member,
)
from scribeline.cluster.redis_listen import Listener
from scribeline.cluster.redis_scripts import (
    ACQUIRE,
    COALESCE,
    RELEASE,
    RENEW_CLAIM,
    RENEW_SLOTS,
    UNREACHABLE,
)

__all__ = ["RedisCluster"]

log = logging.getLogger(__name__)

#: Seconds between attempts to reach Redis again while degraded.
RETRY_SECONDS = 1.0
#: Releases remembered while degraded (beyond this, their leases just run out).
MAX_UNRELEASED = 100_000

_MESSAGE = b"m"
_LOST = b"l"


class RedisCluster(Cluster):
    """One node of a cluster that shares a Redis server."""

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        lease: float = 60.0,
        renew: float = 20.0,
        timeout: float = 1.0,
        probe: float | None = None,
        namespace: str = "sl",
    ) -> None:
        self.node_id = node_id or new_node_id()
        self._ns = namespace
        self._lease_ms = max(int(lease * 1000), 1)
        self._renew = renew
        self._retry = min(RETRY_SECONDS, renew)
        self._probe = probe or min(renew / 4, 5.0)
        # No retries inside redis-py: an unreachable Redis must degrade the node
        # at once, not hold a connecting client for several backoffs.
        self._client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._acquire = self._client.register_script(ACQUIRE)
        self._renew_slots = self._client.register_script(RENEW_SLOTS)
        self._renew_claim = self._client.register_script(RENEW_CLAIM)
        self._release = self._client.register_script(RELEASE)
        self._coalesce = self._client.register_script(COALESCE)
        self._all_channel = f"{namespace}:cluster:all"
        self._listener = Listener(
            self._client,
            (f"{namespace}:cluster:node:{self.node_id}", self._all_channel),
            self._receive,
            probe=self._probe,
            retry=self._retry,
        )
        self._on_message: OnMessage | None = None
        #: What this node holds (unqualified members), for renewal and the local fallback.
        self._slots: dict[str, set[str]] = {}
        self._claims: dict[str, tuple[str, OnLost]] = {}
        self._turns: dict[str, float] = {}
        self._unreleased: set[tuple[str, str]] = set()
        #: Why Redis is unreachable (an exception's type name), or None.
        self._down: str | None = None
        self._went_down = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._timeout = timeout
        self._closed = False

    # -- keys -----------------------------------------------------------------

    def _key(self, kind: str, key: str) -> str:
        return f"{self._ns}:{kind}:{{{key}}}"

    def _full(self, member: str) -> str:
        return join_member(self.node_id, member)

    def _degrade(self, exc: BaseException) -> None:
        if self._down is None:
            log.warning(
                "cluster: Redis unreachable (%s); using node-local limits until it is back",
                type(exc).__name__,
            )
            self._went_down.set()  # start retrying now, not at the next renewal
        self._down = type(exc).__name__

    # -- lifecycle --------------------------------------------------------------

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        try:
            await self._client.ping()
        except UNREACHABLE as exc:
            self._degrade(exc)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._maintain()), loop.create_task(self._listener.run())]
        if self._down is None:
            # Messages sent once start returns must reach us: wait for SUBSCRIBE.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._probe * 2 + 1):
                    await self._listener.listening.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._listener.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a cancellation that redis-py turns into a timeout is
            # caught by the loops, which then see ``_closed`` and end.
            await asyncio.wait(self._tasks, timeout=self._timeout * 2 + 1)
        self._tasks = []
        if self._down is None:
            # A clean stop frees its slots now, not a lease later.
            held = [(k, m) for k, ms in self._slots.items() for m in ms]
            held += [(k, m) for k, (m, _) in self._claims.items()]
            with contextlib.suppress(*UNREACHABLE):
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, member in held:
                        await self._release_in(pipe, key, member)
                    await pipe.execute()
        self._slots.clear()
        self._claims.clear()
        self._on_message = None
        await self._client.aclose()

    async def ping(self) -> None:
        if self._down is not None:
            raise ClusterDegraded(self._down)
        try:
            await self._client.ping()
        except UNREACHABLE as exc:
            self._degrade(exc)
            raise ClusterDegraded(self._down) from None
        if not self._listener.listening.is_set():
            raise ClusterDegraded("pub/sub not subscribed")

    # -- slots --------------------------------------------------------------------

    async def acquire(self, key: str, limit: int, member: str) -> bool:
        if self._down is None:
            try:
                taken = await self._acquire(
                    keys=[self._key("lim", key)],
                    args=[self._full(member), limit, self._lease_ms],
                )
            except UNREACHABLE as exc:
                self._degrade(exc)
            else:
                if taken:
                    self._slots.setdefault(key, set()).add(member)
                    self._unreleased.discard((key, member))
                return bool(taken)
        mine = self._slots.setdefault(key, set())
        if member in mine or len(mine) < limit:
            mine.add(member)
            self._unreleased.discard((key, member))
            return True
        if not mine:
            del self._slots[key]
        return False

    async def release(self, key: str, member: str) -> None:
        mine = self._slots.get(key)
        if mine is not None:
            mine.discard(member)
            if not mine:
                del self._slots[key]
        claim = self._claims.get(key)
        if claim is not None and claim[0] == member:
            del self._claims[key]
        if self._down is None:
            try:
                await self._release(
                    keys=[self._key("lim", key), self._key("own", key)],
                    args=[self._full(member)],
                )
                return
            except UNREACHABLE as exc:
                self._degrade(exc)
        if len(self._unreleased) < MAX_UNRELEASED:
            self._unreleased.add((key, member))

    async def _release_in(self, pipe: Any, key: str, member: str) -> None:
        await self._release(
            keys=[self._key("lim", key), self._key("own", key)],
            args=[self._full(member)],
            client=pipe,
        )

    # -- claims -------------------------------------------------------------------

    async def claim(self, key: str, member: str, on_lost: OnLost) -> None:
        local = self._claims.get(key)
        self._claims[key] = (member, on_lost)
        self._unreleased.discard((key, member))
        if local is not None and local[0] != member:
            _call(local[1])
        if self._down is not None:
            return
        try:
            previous = await self._client.set(
                self._key("own", key), self._full(member), px=self._lease_ms, get=True
            )
        except UNREACHABLE as exc:
            self._degrade(exc)
            return
        if isinstance(previous, bytes):
            node_id, old = split_member(previous.decode())
            if node_id != self.node_id:
                body = orjson.dumps({"k": key, "m": old})
                await self._publish(f"{self._ns}:cluster:node:{node_id}", _LOST, body)

    def _lost(self, key: str, member: str) -> None:
        claim = self._claims.get(key)
        if claim is not None and claim[0] == member:
            del self._claims[key]
            _call(claim[1])

    async def owner(self, key: str) -> str | None:
        if self._down is None:
            try:
                holder = await self._client.get(self._key("own", key))
            except UNREACHABLE as exc:
                self._degrade(exc)
            else:
                return None if holder is None else split_member(_text(holder))[0]
        return self.node_id if key in self._claims else None

    # -- turns --------------------------------------------------------------------

    async def coalesce(self, key: str, interval: float) -> float:
        if interval <= 0:
            return 0.0
        if self._down is None:
            try:
                wait_ms = await self._coalesce(
                    keys=[self._key("turn", key)], args=[max(int(interval * 1000), 1)]
                )
            except UNREACHABLE as exc:
                self._degrade(exc)
            else:
                return int(wait_ms) / 1000
        # Node-local turns while degraded: at most one per interval per node.
        now = asyncio.get_running_loop().time()
        ends = self._turns.get(key, 0.0)
        if ends > now:
            return ends - now
        if len(self._turns) > 10_000:
            self._turns = {k: e for k, e in self._turns.items() if e > now}
        self._turns[key] = now + interval
        return 0.0

    # -- messages -----------------------------------------------------------------

    async def send(self, node_id: str | None, payload: bytes) -> bool:
        if node_id is None or node_id == self.node_id:
            self._deliver(payload)
            if node_id is not None:
                return True
            await self._publish(self._all_channel, _MESSAGE, payload)
            return True
        return await self._publish(f"{self._ns}:cluster:node:{node_id}", _MESSAGE, payload) > 0

    async def _publish(self, channel: str, kind: bytes, body: bytes) -> int:
        if self._down is not None:
            return 0
        try:
            return int(
                await self._client.publish(channel, self.node_id.encode() + b"\n" + kind + body)
            )
        except UNREACHABLE as exc:
            self._degrade(exc)
            return 0

    def _deliver(self, payload: bytes) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(payload)
        except Exception:
            log.exception("a cluster message handler failed")

    def _receive(self, data: bytes) -> None:
        origin, _, rest = data.partition(b"\n")
        kind, body = rest[:1], rest[1:]
        if kind == _MESSAGE:
            if origin.decode() != self.node_id:  # our own broadcast went out at send
                self._deliver(body)
        elif kind == _LOST:
            lost = orjson.loads(body)
            self._lost(lost["k"], lost["m"])

    # -- leases -------------------------------------------------------------------

    async def _maintain(self) -> None:
        while not self._closed:
            if self._down is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._renew):  # the lease cadence
                        await self._went_down.wait()
            if self._down is not None:
                await asyncio.sleep(self._retry)  # the retry cadence while degraded
            self._went_down.clear()
            try:
                await self._renew_all()
            except Exception:  # a bug must not end renewal: leases would run out
                log.exception("cluster: renewing leases failed")

    async def _renew_all(self) -> None:
        slots = [(k, sorted(ms)) for k, ms in self._slots.items() if ms]
        claims = list(self._claims.items())
        unreleased = list(self._unreleased)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, members in slots:
                    await self._renew_slots(
                        keys=[self._key("lim", key)],
                        args=[self._lease_ms, *(self._full(m) for m in members)],
                        client=pipe,
                    )
                for key, (member, _) in claims:
                    await self._renew_claim(
                        keys=[self._key("own", key)],
                        args=[self._full(member), self._lease_ms],
                        client=pipe,
                    )
                for key, member in unreleased:
                    await self._release_in(pipe, key, member)
                await pipe.ping()
                results = await pipe.execute()
        except UNREACHABLE as exc:
            self._degrade(exc)
            return
        if self._down is not None:
            log.warning("cluster: Redis reachable again; cluster-wide limits restored")
            self._down = None
        self._unreleased.difference_update(unreleased)
        for (key, held), renewed in zip(claims, results[len(slots) :], strict=False):
            if not renewed and self._claims.get(key) is held:
                del self._claims[key]  # another node claimed it while we were away
                _call(held[1])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _call(on_lost: OnLost) -> None:
    try:
        on_lost()
    except Exception:
        log.exception("a lost claim's handler failed")
