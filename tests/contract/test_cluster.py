"""The Cluster contract (cluster/base.py), run on every backend with two nodes.

Memory nodes share one process's network; Redis nodes are two coordinators
sharing one Redis server, as two server processes would. The tests at the end
need Redis itself (its outage, its pub/sub connections) and run only there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest

from scribeline.cluster import ClusterDegraded, Signals, open_cluster
from tests.contract.cluster_backends import *  # noqa: F403 - the fixtures
from tests.contract.cluster_backends import Node, Nodes, eventually
from tests.services import Redis, redis_bin, require, running_redis


def test_open_cluster_chooses_by_url_and_refuses_nonsense() -> None:
    """memory:// is a node alone, redis:// a Redis node (nothing connects until
    start); an unknown scheme or a renewal no shorter than the lease is refused."""
    from scribeline.cluster.memory import MemoryCluster

    assert isinstance(open_cluster("memory://"), MemoryCluster)
    assert type(open_cluster("redis://127.0.0.1:1/0")).__name__ == "RedisCluster"
    with pytest.raises(ValueError, match="Unsupported cluster URL"):
        open_cluster("kafka://x")
    with pytest.raises(ValueError, match="shorter than its lease"):
        open_cluster("memory://", lease=20, renew=20)


# -- slots -----------------------------------------------------------------------


async def test_slots_are_limited_across_nodes(nodes: Nodes) -> None:
    """A limit of 3 admits 3 members in all, whichever nodes they are on; taking a
    slot twice takes one; a released slot can be taken from the other node."""
    a, b = await nodes.node(), await nodes.node()
    assert await a.cluster.acquire("call:1", 3, "c1")
    assert await a.cluster.acquire("call:1", 3, "c2")
    assert await b.cluster.acquire("call:1", 3, "c1")  # same name, another node: another member
    assert not await b.cluster.acquire("call:1", 3, "c2")
    assert not await a.cluster.acquire("call:1", 3, "c3")
    assert await a.cluster.acquire("call:1", 3, "c1")  # already held: admitted, nothing more taken
    assert not await b.cluster.acquire("call:1", 3, "c2")
    await a.cluster.release("call:1", "c2")
    assert await b.cluster.acquire("call:1", 3, "c2")
    assert await b.cluster.acquire("call:2", 1, "c9")  # keys are independent


async def test_releasing_what_is_not_held_takes_nothing(nodes: Nodes) -> None:
    """Releasing an unknown member, or another node's member name, frees no slot."""
    a, b = await nodes.node(), await nodes.node()
    assert await a.cluster.acquire("k", 1, "m")
    await b.cluster.release("k", "m")  # B's "m" is not A's "m"
    await b.cluster.release("k", "other")
    await b.cluster.release("nothing", "m")
    assert not await b.cluster.acquire("k", 1, "x")


async def test_a_crashed_nodes_slots_free_themselves(nodes: Nodes) -> None:
    """A node that stops renewing (a crash) loses its slots once the lease runs out."""
    crashed = await nodes.node(lease=0.4, renew=3600)  # never renews within the test
    other = await nodes.node()
    assert await crashed.cluster.acquire("call:7", 2, "a")
    assert await crashed.cluster.acquire("call:7", 2, "b")
    assert not await other.cluster.acquire("call:7", 2, "x")
    started = time.monotonic()
    admitted = False

    async def try_again() -> None:
        nonlocal admitted
        while not admitted:
            admitted = await other.cluster.acquire("call:7", 2, "x")
            await asyncio.sleep(0.05)  # polling a lease that runs out on its own

    async with asyncio.timeout(5):
        await try_again()
    assert time.monotonic() - started >= 0.2  # not before the lease had a chance to run out


async def test_renewed_leases_outlive_the_lease(nodes: Nodes) -> None:
    """While a node renews, its slots and claim stay held for several lease lengths."""
    # Renewed every 0.1 s, a lease of 1.2 s survives a stall of a second (a loaded
    # machine); without renewal it would run out twice over within the wait.
    holder = await nodes.node(lease=1.2, renew=0.1)
    other = await nodes.node()
    assert await holder.cluster.acquire("bot:1", 1, "sub")
    await holder.cluster.claim("producer:1", "p", lambda: None)
    await asyncio.sleep(2.6)  # two leases and more: the point is that nothing happens
    assert not await other.cluster.acquire("bot:1", 1, "sub2")
    assert await other.cluster.owner("producer:1") == holder.id


async def test_close_gives_back_everything_at_once(nodes: Nodes) -> None:
    """A node that stops cleanly frees its slots and claims without waiting for a lease."""
    a, b = await nodes.node(), await nodes.node()
    assert await a.cluster.acquire("k", 1, "m")
    await a.cluster.claim("own", "p", lambda: None)
    await a.cluster.close()
    assert await b.cluster.acquire("k", 1, "m")
    assert await b.cluster.owner("own") is None


# -- claims ----------------------------------------------------------------------


async def test_a_claim_on_another_node_displaces_the_holder(nodes: Nodes) -> None:
    """Claiming a key held on node A tells A's holder (on A) that it lost it; the
    owner is then B, and A releasing its old claim does not free B's."""
    a, b = await nodes.node(), await nodes.node()
    lost: list[str] = []
    await a.cluster.claim("producer:5", "p1", lambda: lost.append("p1"))
    assert await b.cluster.owner("producer:5") == a.id
    await b.cluster.claim("producer:5", "p2", lambda: lost.append("p2"))
    await eventually(lambda: lost == ["p1"])
    assert await a.cluster.owner("producer:5") == b.id
    await a.cluster.release("producer:5", "p1")
    assert await a.cluster.owner("producer:5") == b.id
    await b.cluster.release("producer:5", "p2")
    assert await a.cluster.owner("producer:5") is None
    assert lost == ["p1"]


async def test_a_claim_on_the_same_node_displaces_at_once(nodes: Nodes) -> None:
    """A second member claiming on the holder's node displaces it before claim returns;
    the same member claiming again displaces nobody."""
    a = await nodes.node()
    lost: list[str] = []
    await a.cluster.claim("producer:6", "p1", lambda: lost.append("p1"))
    await a.cluster.claim("producer:6", "p1", lambda: lost.append("p1 again"))
    assert lost == []
    await a.cluster.claim("producer:6", "p2", lambda: lost.append("p2"))
    assert lost == ["p1 again"]  # the handler given last for p1 is the one that runs
    assert await a.cluster.owner("producer:6") == a.id


async def test_a_crashed_nodes_claim_runs_out(nodes: Nodes) -> None:
    """A claim that is not renewed ends with its lease; then nobody owns the key."""
    crashed = await nodes.node(lease=0.3, renew=3600)
    other = await nodes.node()
    await crashed.cluster.claim("producer:8", "p", lambda: None)
    assert await other.cluster.owner("producer:8") == crashed.id
    owner: str | None = crashed.id

    async def poll() -> None:
        nonlocal owner
        while owner is not None:
            owner = await other.cluster.owner("producer:8")
            await asyncio.sleep(0.05)  # polling a lease that runs out on its own

    async with asyncio.timeout(5):
        await poll()


# -- turns -----------------------------------------------------------------------


async def test_one_turn_per_interval_across_nodes(nodes: Nodes) -> None:
    """Within an interval only the first node to ask gets the turn; the others learn
    how long to wait, and after that wait one of them gets the next turn."""
    a, b = await nodes.node(), await nodes.node()
    assert await a.cluster.coalesce("campaign:1", 0.5) == 0.0
    wait_b = await b.cluster.coalesce("campaign:1", 0.5)
    wait_a = await a.cluster.coalesce("campaign:1", 0.5)
    assert 0 < wait_b <= 0.5
    assert 0 < wait_a <= wait_b
    assert await b.cluster.coalesce("campaign:2", 0.5) == 0.0  # keys are independent
    await asyncio.sleep(wait_b + 0.05)  # the wait the cluster asked for
    assert await b.cluster.coalesce("campaign:1", 0.5) == 0.0
    assert await a.cluster.coalesce("campaign:1", 0.5) > 0
    assert await a.cluster.coalesce("campaign:3", 0) == 0.0
    assert await b.cluster.coalesce("campaign:3", 0) == 0.0  # no interval, no coalescing


# -- messages --------------------------------------------------------------------


async def test_messages_reach_one_node_or_every_node(nodes: Nodes) -> None:
    """A message for B reaches B only; one for every node reaches the sender before
    send returns and the others soon after; one for an unknown node reaches nobody."""
    a, b, c = await nodes.node(), await nodes.node(), await nodes.node()
    assert await a.cluster.send(b.id, b"to b")
    await eventually(lambda: b.inbox == [b"to b"])
    assert await a.cluster.send(None, b"all")
    assert a.inbox == [b"all"]
    await eventually(lambda: b.inbox == [b"to b", b"all"] and c.inbox == [b"all"])
    assert await a.cluster.send(a.id, b"self")
    assert a.inbox == [b"all", b"self"]
    assert not await a.cluster.send("no-such-node", b"lost")
    await b.cluster.send(c.id, b"last")  # sent after the lost one: once it arrives,
    await eventually(lambda: c.inbox == [b"all", b"last"])  # the lost one never came
    assert a.inbox == [b"all", b"self"] and b.inbox == [b"to b", b"all"]


async def test_requests_get_their_reply_or_none(nodes: Nodes) -> None:
    """A request reaches the one node it names and returns that node's reply; a
    request to a node that is gone, or that does not reply in time, returns None;
    a broadcast notice reaches every node's handler."""
    a, b = await nodes.signals(), await nodes.signals()
    gate = asyncio.Event()

    async def stop(data: dict[str, object]) -> dict[str, object]:
        if data.get("slow"):
            await gate.wait()
        return {"stopped": data["bot"], "by": b.node_id}

    b.answer("bot.stop", stop)
    assert await a.request(b.node_id, "bot.stop", {"bot": "x"}, 5) == {
        "stopped": "x",
        "by": b.node_id,
    }
    assert await a.request("gone", "bot.stop", {"bot": "x"}, 5) is None
    started = time.monotonic()
    assert await a.request(b.node_id, "bot.stop", {"bot": "y", "slow": True}, 0.2) is None
    assert time.monotonic() - started < 2
    gate.set()
    seen: list[tuple[str, object]] = []
    a.on("key.revoked", lambda d: seen.append(("a", d["id"])))
    b.on("key.revoked", lambda d: seen.append(("b", d["id"])))
    await a.broadcast("key.revoked", {"id": 4})
    assert ("a", 4) in seen  # this node's handler ran before broadcast returned
    await eventually(lambda: sorted(seen) == [("a", 4), ("b", 4)])
    await a.close()
    await b.close()


async def test_a_node_answers_a_bounded_number_of_requests_at_once(nodes: Nodes) -> None:
    """Past ``max_replies`` answers under way, a request is dropped (its sender falls
    back as for a lost message) instead of growing the node's tasks without end;
    once answers finish, requests are answered again."""
    a = await nodes.signals()
    b = Signals(nodes.make(), max_replies=2)
    await b.cluster.start(b.deliver)
    gate = asyncio.Event()
    started = 0

    async def slow(data: dict[str, object]) -> dict[str, object]:
        nonlocal started
        started += 1
        if data["wait"]:
            await gate.wait()
        return {"ok": True}

    b.answer("slow", slow)
    asked = [a.request(b.node_id, "slow", {"wait": True}, 0.5) for _ in range(3)]
    assert await asyncio.gather(*asked) == [None, None, None]
    assert started == 2 and b.dropped == 1 and b.answering == 2
    gate.set()
    await eventually(lambda: b.answering == 0)
    assert await a.request(b.node_id, "slow", {"wait": False}, 5) == {"ok": True}
    await a.close()
    await b.close()


# -- Redis only: outages and lost connections ------------------------------------


@pytest.fixture
def own_redis() -> Iterator[Redis]:
    """A Redis server this test may stop, pause and restart."""
    with running_redis() as server:
        yield server


async def test_redis_outage_degrades_to_node_local_limits_and_recovers(own_redis: Redis) -> None:
    """While Redis is down each node admits up to the limit on its own, says it is
    degraded, and still reaches itself; once Redis is back (empty, as after a crash)
    the nodes re-assert what they hold and enforce the limit cluster-wide again
    (past it at first: a limit admits, it never closes connections)."""
    made = Nodes(own_redis.url)
    try:
        # Renewals far apart: recovery must not wait for the next one.
        a = Node(made.make(lease=60, renew=30, timeout=0.3))
        b = Node(made.make(lease=60, renew=30, timeout=0.3))
        await a.cluster.start(a.inbox.append)
        await b.cluster.start(b.inbox.append)
        await a.cluster.ping()
        assert await a.cluster.acquire("call:1", 2, "a1")
        own_redis.stop()
        assert await a.cluster.acquire("call:1", 2, "a2")  # node-local: 2 of 2 here
        assert not await a.cluster.acquire("call:1", 2, "a3")
        await a.cluster.release("call:1", "a2")
        assert await a.cluster.acquire("call:1", 2, "a3")
        assert await b.cluster.acquire("call:1", 2, "b1")  # B counts only its own
        with pytest.raises(ClusterDegraded):
            await a.cluster.ping()
        assert await a.cluster.coalesce("campaign:1", 10) == 0.0
        assert await a.cluster.coalesce("campaign:1", 10) > 0
        assert await a.cluster.send(None, b"still me")
        assert a.inbox == [b"still me"]
        assert not await a.cluster.send(b.id, b"unreachable")
        await a.cluster.claim("producer:1", "p", lambda: None)
        assert await a.cluster.owner("producer:1") == a.id

        own_redis.start()
        for node in (a, b):
            await eventually(lambda n=node: _healthy(n), within=5)  # type: ignore[misc]
        key = f"{made.namespace}:lim:{{call:1}}"
        await eventually(lambda: _members(own_redis, key) == 3)  # a1, a3, b1: past the limit
        assert not await b.cluster.acquire("call:1", 2, "b2")
        assert await b.cluster.owner("producer:1") == a.id
        await a.cluster.release("call:1", "a1")
        await a.cluster.release("call:1", "a3")
        assert await b.cluster.acquire("call:1", 2, "b2")
    finally:
        await made.close()


def _healthy(node: Node) -> bool:
    return node.cluster._down is None  # type: ignore[attr-defined]


def _members(server: Redis, key: str) -> int:
    return int(server.command("ZCARD", key) or 0)


async def test_a_claim_taken_while_away_is_given_up_on_renewal(redis_server: Redis) -> None:
    """If the message telling a holder it was displaced never arrives, its node finds
    out when it renews and its holder is told then."""
    made = Nodes(redis_server.url)
    try:
        a = Node(made.make(lease=5, renew=0.2))
        await a.cluster.start(a.inbox.append)
        lost: list[str] = []
        await a.cluster.claim("producer:2", "p", lambda: lost.append("p"))
        key = f"{made.namespace}:own:{{producer:2}}"
        redis_server.command("SET", key, "elsewhere/q", "PX", "5000")  # no message sent
        await eventually(lambda: lost == ["p"])
        assert await a.cluster.owner("producer:2") == "elsewhere"
    finally:
        await made.close()


async def test_messages_flow_again_after_the_pubsub_connection_is_killed(
    redis_server: Redis,
) -> None:
    """A killed pub/sub connection is replaced: messages sent afterwards arrive."""
    made = Nodes(redis_server.url)
    try:
        a = Node(made.make(renew=0.4))
        b = Node(made.make(renew=0.4))
        await a.cluster.start(a.inbox.append)
        await b.cluster.start(b.inbox.append)
        redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
        sent = 0

        async def until_received() -> None:
            nonlocal sent
            while not b.inbox:
                sent += 1
                await a.cluster.send(b.id, orjson.dumps(sent))
                await asyncio.sleep(0.1)  # one message per retry while b reconnects

        async with asyncio.timeout(10):
            await until_received()
        await b.cluster.ping()
    finally:
        await made.close()


async def test_what_is_released_while_redis_is_unreachable_is_given_back(
    own_redis: Redis,
) -> None:
    """A slot released while Redis does not answer (paused: its data survives) is
    removed from Redis once it answers again, not left to its lease."""
    made = Nodes(own_redis.url)
    try:
        a = Node(made.make(lease=60, renew=30, timeout=0.2))
        await a.cluster.start(a.inbox.append)
        assert await a.cluster.acquire("call:9", 5, "a1")
        assert await a.cluster.acquire("call:9", 5, "a2")
        key = f"{made.namespace}:lim:{{call:9}}"
        own_redis.command("CLIENT", "PAUSE", "1500", "ALL")
        await a.cluster.release("call:9", "a1")  # times out: degraded, remembered
        assert not _healthy(a)
        await eventually(lambda: _healthy(a), within=10)
        assert own_redis.command("ZRANGE", key, "0", "-1") == f"{a.id}/a2"
    finally:
        await made.close()


async def test_a_release_during_a_renewal_stays_released(redis_server: Redis) -> None:
    """A renewal looks at what the node holds, then a round trip later writes to
    Redis: a slot or claim released in between stays released, whether the
    renewal only extends leases or re-asserts them (after an outage)."""
    made = Nodes(redis_server.url)
    try:
        a = Node(made.make(lease=60, renew=30))
        b = Node(made.make(lease=60, renew=30))
        for node in (a, b):
            await node.cluster.start(node.inbox.append)
        renewing = a.cluster._renew_all  # type: ignore[attr-defined]
        for i, reassert in enumerate([False, True] * 5):
            a.cluster._reassert = reassert  # type: ignore[attr-defined]
            assert await a.cluster.acquire(f"call:{i}", 1, "m")
            await a.cluster.claim(f"producer:{i}", "p", lambda: None)
            renewal = asyncio.ensure_future(renewing())
            await asyncio.sleep(0)  # the renewal has looked at what the node holds
            await a.cluster.release(f"call:{i}", "m")
            await a.cluster.release(f"producer:{i}", "p")
            await renewal
            assert await b.cluster.acquire(f"call:{i}", 1, "x"), f"slot {i} came back"
            assert await b.cluster.owner(f"producer:{i}") is None, f"claim {i} came back"
    finally:
        await made.close()


async def test_a_lease_redis_lost_is_put_back_at_once(redis_server: Redis) -> None:
    """If Redis loses a lease without the node noticing (restarted between two
    renewals, no persistence), the next renewal finds it missing and the node
    re-asserts it at once rather than leaving the slot free to others."""
    made = Nodes(redis_server.url)
    try:
        a = Node(made.make(lease=60, renew=0.2))
        await a.cluster.start(a.inbox.append)
        assert await a.cluster.acquire("call:3", 1, "m")
        await a.cluster.claim("producer:3", "p", lambda: None)
        redis_server.command("DEL", f"{made.namespace}:lim:{{call:3}}")
        redis_server.command("DEL", f"{made.namespace}:own:{{producer:3}}")
        key = f"{made.namespace}:lim:{{call:3}}"
        await eventually(lambda: _members(redis_server, key) == 1)
        assert await a.cluster.owner("producer:3") == a.id
    finally:
        await made.close()


async def test_a_redis_that_refuses_writes_degrades_the_node(own_redis: Redis) -> None:
    """A Redis that answers but refuses writes (READONLY: a replica, as after a
    failover; OOM) is an outage, not a bug: the node degrades to node-local
    limits instead of raising to every connection, and re-asserts its leases once
    Redis takes writes again."""
    require("Redis", redis_bin() is not None)
    primary = Redis().start()
    made = Nodes(own_redis.url)
    try:
        a = Node(made.make(lease=60, renew=30, timeout=0.5))
        await a.cluster.start(a.inbox.append)
        assert await a.cluster.acquire("call:1", 2, "a1")
        own_redis.command("REPLICAOF", "127.0.0.1", str(primary.port))  # now read-only
        await eventually(lambda: "role:slave" in own_redis.command("INFO", "replication"))
        assert await a.cluster.acquire("call:1", 2, "a2")  # node-local: 2 of 2 here
        assert not await a.cluster.acquire("call:1", 2, "a3")
        await a.cluster.claim("producer:1", "p", lambda: None)
        assert await a.cluster.owner("producer:1") == a.id
        assert await a.cluster.coalesce("campaign:1", 10) == 0.0
        with pytest.raises(ClusterDegraded, match="ReadOnlyError"):
            await a.cluster.ping()
        own_redis.command("REPLICAOF", "NO", "ONE")
        await eventually(lambda: _healthy(a), within=5)
        key = f"{made.namespace}:lim:{{call:1}}"
        assert _members(own_redis, key) == 2  # a1 and a2, re-asserted
        assert await a.cluster.owner("producer:1") == a.id

        own_redis.command("CONFIG", "SET", "maxmemory", "1")  # full: writes refused
        try:
            await a.cluster.claim("producer:2", "p", lambda: None)
            with pytest.raises(ClusterDegraded, match="OutOfMemoryError"):
                await a.cluster.ping()
        finally:
            own_redis.command("CONFIG", "SET", "maxmemory", "0")
    finally:
        await made.close()
        primary.destroy()
