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
- ``{ns}:node:{node id}``: written at each renewal, so a renewal proves that
  Redis takes writes (a replica answers ``PING`` but refuses them).
- channels ``{ns}:cluster:node:{node id}`` (messages for one node) and
  ``{ns}:cluster:all``, followed by a :class:`Listener` (``redis_listen``).

Leases last ``lease`` seconds and are renewed every ``renew`` seconds for
everything this node holds, in one pipeline (``redis_leases``: a renewal
extends only what is still there, so it never undoes a release). Slots are
taken and given back in batches (``redis_batch``), so a burst of connections
opening or closing needs one Redis connection, not one each. Any Redis
connection error, timeout (``timeout`` seconds) or refusal to write
(``OUTAGE``: a read-only replica after a failover, out of memory) turns the
node *degraded*: it answers from what it holds alone (slots it holds count
against the limit; claims and turns are its own) until a retry, every
second, reaches Redis again. It then re-asserts its leases (adds them back,
even past the limit: the limit is checked when a connection is admitted,
never by closing one) and gives back what was released meanwhile.

``close`` (a clean stop) waits for the batches on their way, then gives back
everything the node holds or released without Redis hearing of it, in one
pipeline, even while degraded (Redis may be back; if not, the leases run out
as after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
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
from scribeline.cluster.held import Held, call_lost
from scribeline.cluster.redis_batch import SlotBatcher
from scribeline.cluster.redis_leases import Leases
from scribeline.cluster.redis_listen import Listener
from scribeline.cluster.redis_scripts import COALESCE, OUTAGE

__all__ = ["RedisCluster"]

log = logging.getLogger(__name__)

#: Seconds between attempts to reach Redis again while degraded.
RETRY_SECONDS = 1.0
#: Redis connections per node at most (pub/sub, renewals, slot batches, claims...).
MAX_CONNECTIONS = 64

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
        # at once, not hold a connecting client for several backoffs. A burst
        # beyond the pool waits for a connection (up to ``timeout``) instead of
        # failing at once, which would pass for an outage.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = Redis.from_pool(pool)
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
        #: What this node holds, for renewal and the local fallback.
        self._held = Held()
        self._leases = Leases(
            self._client,
            self._held,
            key=self._key,
            full=self._full,
            lease_ms=self._lease_ms,
            node_key=self._key("node", self.node_id),
        )
        self._slots = SlotBatcher(
            self._client, self._held, key=self._key, full=self._full, lease_ms=self._lease_ms
        )
        #: Why Redis cannot be used (an exception's type name), or None.
        self._down: str | None = None
        #: The next renewal re-adds what this node holds (a lease was found missing).
        self._reassert = False
        #: Renew now, not at the next cadence (Redis went away, or a lease is missing).
        self._wake = asyncio.Event()
        #: Set by ``close``: the renewal loop ends after the renewal under way.
        self._stop = asyncio.Event()
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
                "cluster: Redis unreachable or refusing writes (%s); "
                "using node-local limits until it is back",
                type(exc).__name__,
            )
            self._wake.set()  # start retrying now, not at the next renewal
        self._down = type(exc).__name__

    # -- lifecycle --------------------------------------------------------------

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        try:
            await self._client.ping()
        except OUTAGE as exc:
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
        self._closed = True  # from now on nothing new goes to Redis
        grace = self._timeout * 2 + 1
        self._listener.close()
        self._stop.set()
        self._wake.set()
        if self._tasks:
            # The listener is cancelled at once; a renewal under way finishes
            # first, so none of its writes can land after the release below.
            # Bounded: a cancellation that redis-py turns into a timeout is
            # caught by the loops, which then see ``_closed`` and end.
            maintain, listener = self._tasks
            listener.cancel()
            done, _ = await asyncio.wait([maintain], timeout=grace)
            if not done:
                maintain.cancel()
            await asyncio.wait(self._tasks, timeout=grace)
        self._tasks = []
        await self._slots.close(grace)
        await self._give_back()
        self._held.clear()
        self._on_message = None
        await self._client.aclose()

    async def _give_back(self) -> None:
        # A clean stop frees its slots and claims now, not a lease later, and
        # tries even while degraded: Redis may be back since the last retry.
        pairs = self._held.everything() + sorted(self._held.unreleased)
        if not pairs:
            return
        try:
            await self._leases.release_all(pairs)
        except OUTAGE as exc:
            log.warning(
                "cluster: could not give back %d slots and claims (%s); "
                "they free themselves when their leases run out",
                len(pairs),
                type(exc).__name__,
            )
        else:
            self._held.unreleased.clear()

    async def ping(self) -> None:
        if self._down is not None:
            raise ClusterDegraded(self._down)
        try:
            await self._client.ping()
        except OUTAGE as exc:
            self._degrade(exc)
            raise ClusterDegraded(self._down) from None
        if not self._listener.listening.is_set():
            raise ClusterDegraded("pub/sub not subscribed")

    # -- slots --------------------------------------------------------------------

    async def acquire(self, key: str, limit: int, member: str) -> bool:
        if self._down is None and not self._closed:
            try:
                taken = await self._slots.acquire(key, limit, member)
            except OUTAGE as exc:
                self._degrade(exc)
            else:
                if taken:
                    self._held.add_slot(key, member)
                return bool(taken)
        return self._held.local_acquire(key, limit, member)

    async def release(self, key: str, member: str) -> None:
        self._held.drop(key, member)
        if self._down is None and not self._closed:
            try:
                # Cancelled meanwhile, the release still goes out with its batch.
                await self._slots.release(key, member)
            except OUTAGE as exc:
                self._degrade(exc)  # the batch remembered it for the next renewal
            return
        self._held.remember_unreleased([(key, member)])

    # -- claims -------------------------------------------------------------------

    async def claim(self, key: str, member: str, on_lost: OnLost) -> None:
        local = self._held.take_claim(key, member, on_lost)
        if local is not None and local[0] != member:
            call_lost(local[1])
        if self._down is not None:
            return
        try:
            previous = await self._client.set(
                self._key("own", key), self._full(member), px=self._lease_ms, get=True
            )
        except OUTAGE as exc:
            self._degrade(exc)
            return
        if isinstance(previous, bytes):
            node_id, old = split_member(previous.decode())
            if node_id != self.node_id:
                body = orjson.dumps({"k": key, "m": old})
                await self._publish(f"{self._ns}:cluster:node:{node_id}", _LOST, body)

    def _lost(self, key: str, member: str) -> None:
        claim = self._held.claims.get(key)
        if claim is not None and claim[0] == member:
            del self._held.claims[key]
            call_lost(claim[1])

    async def owner(self, key: str) -> str | None:
        if self._down is None:
            try:
                holder = await self._client.get(self._key("own", key))
            except OUTAGE as exc:
                self._degrade(exc)
            else:
                return None if holder is None else split_member(_text(holder))[0]
        return self.node_id if key in self._held.claims else None

    # -- turns --------------------------------------------------------------------

    async def coalesce(self, key: str, interval: float) -> float:
        if interval <= 0:
            return 0.0
        if self._down is None:
            try:
                wait_ms = await self._coalesce(
                    keys=[self._key("turn", key)], args=[max(int(interval * 1000), 1)]
                )
            except OUTAGE as exc:
                self._degrade(exc)
            else:
                return int(wait_ms) / 1000
        # Node-local turns while degraded: at most one per interval per node.
        return self._held.local_turn(key, interval, asyncio.get_running_loop().time())

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
        except OUTAGE as exc:
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
        while not self._stop.is_set():
            if self._down is None:
                await _wait(self._wake, self._renew)  # the lease cadence
            if self._down is not None:
                await _wait(self._stop, self._retry)  # the retry cadence while degraded
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                await self._renew_all()
            except Exception:  # a bug must not end renewal: leases would run out
                log.exception("cluster: renewing leases failed")

    async def _renew_all(self) -> None:
        try:
            missing = await self._leases.renew(self._down is not None or self._reassert)
        except OUTAGE as exc:
            self._degrade(exc)
            return
        if self._down is not None:
            log.warning("cluster: Redis usable again; cluster-wide limits restored")
            self._down = None
        self._reassert = missing
        if missing:
            self._wake.set()  # put back what Redis lost now, not a renewal later


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` have passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
