"""The services on two nodes of one cluster: what used to hold per process now holds
across nodes.

Each node has its own cluster member, broker and services, as two server
processes would; they share one storage object (the per-node SQLite stands
in for the shared PostgreSQL store, which is not what these tests are about)
and, on the ``redis`` backend, one Redis server. Every test runs on both
backends (``nodes``, from ``cluster_backends``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scribeline.auth import KEY_REVOKED, Authenticator, hash_key, new_api_key
from scribeline.broker import Broker, BrokerUnavailable, open_broker
from scribeline.broker.memory import MemoryBroker
from scribeline.cluster import Signals, announce, check
from scribeline.domain import Bot
from scribeline.errors import AuthenticationFailed, StorageUnavailable, TranscriptionDisabled
from scribeline.events import BotEventType, EventType, NewEvent
from scribeline.ingest.bots import MANUALLY_STOPPED, BotService
from scribeline.ingest.calls import CallService
from scribeline.ingest.campaigns import CampaignService
from scribeline.ingest.models import CreateCall, Transcript
from scribeline.ingest.publish import Publisher
from scribeline.protocols.meeting_bot import STOP_ACTION, encode_action
from scribeline.readiness import Readiness, is_ready, soft, summary
from scribeline.registry import Registry
from scribeline.storage import Storage, open_storage
from tests.contract.cluster_backends import *  # noqa: F403 - the fixtures
from tests.contract.cluster_backends import Nodes, eventually
from tests.services import Redis, redis_bin, require

SECRET = "s" * 48
#: Seconds between two progress events of one campaign in these tests.
INTERVAL = 0.6


class Producer:
    """Stands in for a producer connection: what the services need of one. It
    records what it is sent and passes each message to ``hears``, if given."""

    def __init__(self, hears: Callable[[bytes], None] | None = None) -> None:
        self.sent: list[bytes] = []
        self._hears = hears

    @property
    def member(self) -> str:
        return f"{id(self):x}"

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)
        if self._hears is not None:
            self._hears(payload)


class DownBroker(MemoryBroker):
    """A broker whose Redis is away: every publish fails."""

    async def publish(self, channel: str, payload: bytes) -> None:
        raise BrokerUnavailable("Redis: Connection refused")


@dataclass
class ServiceNode:
    """One node's services, and the bot actions its broker relayed."""

    signals: Signals
    broker: Broker
    registry: Registry
    calls: CallService
    campaigns: CampaignService
    bots: BotService
    auth: Authenticator
    actions: list[bytes] = field(default_factory=list)

    async def close(self) -> None:
        await self.campaigns.close()
        await self.bots.close()
        await self.signals.close()
        await self.broker.close()


class Deployment:
    """Service nodes sharing one storage and one cluster backend."""

    def __init__(self, nodes: Nodes, storage: Storage) -> None:
        self.nodes = nodes
        self.storage = storage
        self.made: list[ServiceNode] = []

    async def node(self, *, stop_timeout: float = 5.0) -> ServiceNode:
        signals = Signals(self.nodes.make())
        broker = open_broker("memory://")
        publisher = Publisher(broker)
        campaigns = CampaignService(self.storage, publisher, INTERVAL, signals.cluster)
        node = ServiceNode(
            signals=signals,
            broker=broker,
            registry=Registry(20, 20, signals.cluster),
            calls=CallService(self.storage, publisher, campaigns, signals, switch_cache_seconds=60),
            campaigns=campaigns,
            bots=BotService(self.storage, broker, publisher, stop_timeout, signals),
            auth=Authenticator(self.storage, SECRET, cache_seconds=60, signals=signals),
        )
        await broker.start(lambda channel, payload: node.actions.append(payload))
        await signals.cluster.start(signals.deliver)
        self.made.append(node)
        return node


@pytest.fixture
async def deployment(nodes: Nodes, tmp_path: Path) -> AsyncIterator[Deployment]:
    storage = await open_storage("", tmp_path)
    made = Deployment(nodes, storage)
    try:
        yield made
    finally:
        for node in made.made:
            await node.close()
        await nodes.close()
        await storage.close()


async def _org(storage: Storage) -> tuple[int, int]:
    """An organization and one of its keys: (org id, key id)."""
    org = await storage.create_org("acme")
    _, prefix, digest = new_api_key()
    key = await storage.add_api_key(org.id, prefix, digest, frozenset({"write"}), "k")
    return org.id, key.id


async def _bot(d: Deployment, node: ServiceNode) -> Bot:
    org_id, key_id = await _org(d.storage)
    return await node.bots.create(org_id, key_id, "https://meet.example/x", "Bot", "m")


async def _stops(storage: Storage, bot: Bot) -> list[str]:
    events = await storage.read(bot.stream)
    return [e.data["reason"] for e in events if e.type == BotEventType.STOP]


def _note(into: list[str], name: str) -> Callable[[], Coroutine[Any, Any, None]]:
    async def replaced() -> None:
        into.append(name)

    return replaced


# -- connection limits -----------------------------------------------------------


async def test_the_connection_limit_counts_every_node(deployment: Deployment) -> None:
    """A per-call limit of 2 admits two connections in all, whichever nodes they reach;
    one leaving on one node admits one on the other."""
    a, b = await deployment.node(), await deployment.node()
    c1, c2, c3 = Producer(), Producer(), Producer()
    assert await a.registry.acquire("call:1", 2, c1)  # type: ignore[arg-type]
    assert await b.registry.acquire("call:1", 2, c2)  # type: ignore[arg-type]
    assert not await b.registry.acquire("call:1", 2, c3)  # type: ignore[arg-type]
    assert not await a.registry.acquire("call:1", 2, c3)  # type: ignore[arg-type]
    await a.registry.release("call:1", c1)  # type: ignore[arg-type]
    assert await b.registry.acquire("call:1", 2, c3)  # type: ignore[arg-type]


# -- one producer per bot, and stopping it from anywhere ----------------------------


async def test_a_producer_on_another_node_replaces_the_first(deployment: Deployment) -> None:
    """A bot's producer connecting on node B displaces the one on node A, which is
    told (``replaced``) on node A; the new one is not."""
    a, b = await deployment.node(), await deployment.node()
    bot = await _bot(deployment, a)
    replaced: list[str] = []
    first, second = Producer(), Producer()
    await a.bots.attach_producer(bot, first, _note(replaced, "first"))  # type: ignore[arg-type]
    await b.bots.attach_producer(bot, second, _note(replaced, "second"))  # type: ignore[arg-type]
    await eventually(lambda: replaced == ["first"])
    await a.bots.detach_producer(bot, first)  # type: ignore[arg-type]
    # The first one leaving does not free the bot: the second still holds it.
    assert await a.signals.cluster.owner(f"bot-producer:{bot.id}") == b.signals.node_id


def _stops_itself(node: ServiceNode, bot: Bot) -> Producer:
    """A producer that, told to stop, stores its own ``stop`` (bot_left) through ``node``."""
    tasks: list[asyncio.Task[Any]] = []

    def hears(payload: bytes) -> None:
        if payload == encode_action(STOP_ACTION):
            stop = NewEvent(BotEventType.STOP, {"reason": "bot_left"}, closes=True)
            tasks.append(asyncio.ensure_future(node.bots.append(bot, stop)))

    return Producer(hears)


async def test_a_stop_on_one_node_reaches_the_producer_on_another(
    deployment: Deployment,
) -> None:
    """A stop requested on node A, with the producer on node B, asks that producer
    (through node B) to stop; its own ``stop`` is the only one stored, and A's stop
    returns once it is, not after the stop timeout."""
    a, b = await deployment.node(stop_timeout=20), await deployment.node(stop_timeout=20)
    bot = await _bot(deployment, a)
    producer = _stops_itself(b, bot)
    await b.bots.attach_producer(bot, producer, _note([], "p"))  # type: ignore[arg-type]
    started = time.monotonic()
    await a.bots.stop(bot)
    assert time.monotonic() - started < 10  # half the stop timeout: it did not wait
    assert await _stops(deployment.storage, bot) == ["bot_left"]
    assert (await a.bots.get(bot.org_id, bot.public_id)).ended
    assert producer.sent == [encode_action(STOP_ACTION)]


async def test_a_stop_reaches_a_producer_on_this_node_without_the_broker(
    deployment: Deployment,
) -> None:
    """With the broker unreachable, a stop for a producer on this node still reaches
    it (directly, not through the broker), and its own ``stop`` is stored."""
    a = await deployment.node(stop_timeout=20)
    a.bots._broker = DownBroker()
    bot = await _bot(deployment, a)
    producer = _stops_itself(a, bot)
    await a.bots.attach_producer(bot, producer, _note([], "p"))  # type: ignore[arg-type]
    await a.bots.stop(bot)
    assert await _stops(deployment.storage, bot) == ["bot_left"]


async def test_a_stop_is_stored_when_the_broker_is_unreachable(deployment: Deployment) -> None:
    """With no producer here and the broker unreachable (so the stop cannot be
    published to one elsewhere), the stop is still stored: the bot ends, no error."""
    a = await deployment.node(stop_timeout=20)
    a.bots._broker = DownBroker()
    bot = await _bot(deployment, a)
    await a.bots.stop(bot)
    assert await _stops(deployment.storage, bot) == [MANUALLY_STOPPED]


async def test_a_stop_that_finds_the_bot_ended_elsewhere_leaves_nothing_behind(
    deployment: Deployment,
) -> None:
    """If the bot is ended on another node while this node waits for its producer,
    this node's own stop finds it ended, and nothing is left waiting here."""
    a, b = await deployment.node(stop_timeout=0.3), await deployment.node()
    bot = await _bot(deployment, a)
    producer = Producer()  # never stops by itself
    await a.bots.attach_producer(bot, producer, _note([], "p"))  # type: ignore[arg-type]
    stopping = asyncio.ensure_future(a.bots.stop(bot))
    await eventually(lambda: bool(producer.sent))
    await b.bots.append(bot, NewEvent(BotEventType.STOP, {"reason": "bot_left"}, closes=True))
    await stopping
    assert await _stops(deployment.storage, bot) == ["bot_left"]
    assert a.bots._ended == {}


async def test_a_producer_that_does_not_stop_is_stopped_once_by_the_server(
    deployment: Deployment,
) -> None:
    """If the producer on node B ignores the stop, one ``stop`` (manually_stopped) is
    stored after the stop timeout, and node A's stop returns then."""
    a = await deployment.node(stop_timeout=0.3)
    b = await deployment.node(stop_timeout=0.3)
    bot = await _bot(deployment, a)
    await b.bots.attach_producer(bot, Producer(), _note([], "p"))  # type: ignore[arg-type]
    started = time.monotonic()
    await a.bots.stop(bot)
    assert time.monotonic() - started >= 0.3  # B waited for its producer first
    assert await _stops(deployment.storage, bot) == [MANUALLY_STOPPED]


async def test_a_stop_with_no_producer_anywhere_is_stored_at_once(
    deployment: Deployment,
) -> None:
    """With no producer on any node, the node asked stores the stop itself, at once."""
    a, _ = await deployment.node(stop_timeout=20), await deployment.node(stop_timeout=20)
    bot = await _bot(deployment, a)
    started = time.monotonic()
    await a.bots.stop(bot)
    assert time.monotonic() - started < 10  # half the stop timeout: it did not wait
    assert await _stops(deployment.storage, bot) == [MANUALLY_STOPPED]


# -- campaign progress -------------------------------------------------------------


async def test_campaign_progress_is_coalesced_across_nodes(deployment: Deployment) -> None:
    """Changes reported on two nodes at once give one progress event at once and the
    next one only an interval later (per-node coalescing gave two at once)."""
    a, b = await deployment.node(), await deployment.node()
    org_id, _ = await _org(deployment.storage)
    assistant = await deployment.storage.create_assistant(org_id, "a", True)
    campaign = await deployment.storage.create_campaign(org_id, assistant.id, "c")
    progress: list[int] = []

    async def count() -> None:
        events = await deployment.storage.read(f"campaign:{campaign.id}")
        progress[:] = [e.ts for e in events if e.type == EventType.PROGRESS]

    a.campaigns.changed(campaign)
    b.campaigns.changed(campaign)
    async with asyncio.timeout(5):
        while len(progress) < 2:
            await count()
            await asyncio.sleep(0.02)  # polling storage: nothing to await
    # Stored timestamps, not how long we waited: two at once would be ~0 ms apart.
    assert progress[1] - progress[0] >= INTERVAL * 1000 * 0.8


async def _progress(storage: Storage, campaign_id: int) -> int:
    events = await storage.read(f"campaign:{campaign_id}")
    return sum(e.type == EventType.PROGRESS for e in events)


async def test_progress_that_storage_refuses_is_appended_once_it_is_back(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A progress append that fails (a PostgreSQL blip) is tried again after a short
    backoff, not dropped with the turn it used."""
    a = await deployment.node()
    org_id, _ = await _org(deployment.storage)
    assistant = await deployment.storage.create_assistant(org_id, "a", True)
    campaign = await deployment.storage.create_campaign(org_id, assistant.id, "c")
    append_progress = deployment.storage.append_progress
    refusals = 2

    async def flaky(campaign_id: int) -> Any:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise StorageUnavailable()
        return await append_progress(campaign_id)

    monkeypatch.setattr(deployment.storage, "append_progress", flaky)
    a.campaigns.changed(campaign)
    await eventually(lambda: refusals == 0)
    async with asyncio.timeout(5):
        while await _progress(deployment.storage, campaign.id) == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # polling storage: nothing to await


async def test_closing_a_node_appends_its_pending_progress_at_once(
    deployment: Deployment,
) -> None:
    """Progress a node scheduled for its next turn is appended when the node closes,
    not dropped: no other node knows it is due."""
    a = await deployment.node()
    org_id, _ = await _org(deployment.storage)
    assistant = await deployment.storage.create_assistant(org_id, "a", True)
    campaign = await deployment.storage.create_campaign(org_id, assistant.id, "c")
    a.campaigns.changed(campaign)  # the turn is free: progress at once
    async with asyncio.timeout(5):
        while await _progress(deployment.storage, campaign.id) == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # polling storage: nothing to await
    a.campaigns.changed(campaign)  # within the interval: waits for the next turn
    await a.campaigns.close()
    assert await _progress(deployment.storage, campaign.id) == 2


# -- cache invalidation ------------------------------------------------------------


async def test_switching_transcription_off_reaches_every_node(deployment: Deployment) -> None:
    """Node B caches an assistant's switch for a minute; switching it off through node
    A makes node B refuse transcripts at once, not when its cache expires."""
    a, b = await deployment.node(), await deployment.node()
    org_id, _ = await _org(deployment.storage)
    assistant = await deployment.storage.create_assistant(org_id, "a", True)
    call = await a.calls.create(org_id, CreateCall(call_sid="CA1", assistant_id=assistant.id))
    line = [Transcript(content="hello", speaker="user")]
    await b.calls.append_transcripts(call, line)  # B now caches "enabled"
    await deployment.storage.update_assistant(org_id, assistant.id, False)
    await a.calls.forget_assistant(assistant.id)
    with pytest.raises(TranscriptionDisabled):
        await a.calls.append_transcripts(call, line)

    refused = False

    async def until_refused() -> None:
        nonlocal refused
        while not refused:
            try:
                await b.calls.append_transcripts(call, line)
            except TranscriptionDisabled:
                refused = True
            else:
                await asyncio.sleep(0.02)  # the notice is on its way

    async with asyncio.timeout(5):
        await until_refused()


async def test_a_revoked_key_stops_working_on_every_node(deployment: Deployment) -> None:
    """Node B caches a key for a minute; a revocation announced on node A makes node B
    refuse the key at once."""
    a, b = await deployment.node(), await deployment.node()
    org = await deployment.storage.create_org("acme")
    key, prefix, digest = new_api_key()
    record = await deployment.storage.add_api_key(org.id, prefix, digest, frozenset({"read"}), "")
    assert digest == hash_key(key)
    assert (await b.auth.authenticate(key)).key_id == record.id  # cached on B
    await deployment.storage.revoke_api_key(org.id, str(record.id))
    assert (await b.auth.authenticate(key)).key_id == record.id  # still cached
    await a.signals.broadcast(KEY_REVOKED, {"id": record.id})
    async with asyncio.timeout(5):
        await _until_refused(b.auth, key)


async def _until_refused(auth: Authenticator, key: str) -> None:
    while True:
        try:
            await auth.authenticate(key)
        except AuthenticationFailed:
            return
        await asyncio.sleep(0.02)  # the notice is on its way


# -- Redis only ------------------------------------------------------------------


async def test_the_admin_cli_can_announce_a_revocation(redis_server: Redis, tmp_path: Path) -> None:
    """``announce`` (what ``keys revoke`` runs after revoking in storage) reaches the
    running nodes from outside any server."""
    nodes = Nodes(redis_server.url)
    d = Deployment(nodes, await open_storage("", tmp_path))
    try:
        b = await d.node()
        org = await d.storage.create_org("acme")
        key, prefix, digest = new_api_key()
        record = await d.storage.add_api_key(org.id, prefix, digest, frozenset({"read"}), "")
        await b.auth.authenticate(key)
        await d.storage.revoke_api_key(org.id, str(record.id))
        await announce(nodes.url, KEY_REVOKED, {"id": record.id}, namespace=nodes.namespace)
        async with asyncio.timeout(5):
            await _until_refused(b.auth, key)
    finally:
        for node in d.made:
            await node.close()
        await nodes.close()
        await d.storage.close()


async def test_readyz_says_degraded_but_ready_while_redis_is_down() -> None:
    """With Redis stopped the cluster check says ``degraded: ...`` and the node stays
    ready (200) as long as its storage is fine; with Redis back it is ``ok`` again."""
    require("Redis", redis_bin() is not None)
    server = Redis().start()
    made = Nodes(server.url)
    try:
        cluster = made.make(renew=0.2, lease=2, timeout=0.3)
        await cluster.start(lambda payload: None)

        async def storage_ok() -> None:
            return None

        async def cluster_check() -> str | None:
            return await check(cluster, 1.0)

        readiness = Readiness({"storage": storage_ok, "cluster": cluster_check}, 2, ttl=0)
        assert await readiness.check() == {"storage": "ok", "cluster": "ok"}
        server.stop()
        checks = await readiness.check()
        assert checks["cluster"].startswith("degraded: ")
        assert is_ready(checks) and summary(checks) == "degraded"
        assert not is_ready({**checks, "storage": "unavailable: timed out"})
        server.start()

        async def until_ok() -> None:
            while (await readiness.check())["cluster"] != "ok":  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the node retries Redis every 0.2 s

        async with asyncio.timeout(10):
            await until_ok()
    finally:
        await made.close()
        server.destroy()


async def test_a_soft_probe_degrades_instead_of_failing() -> None:
    """A soft probe (the Redis broker's) reports a failure or a timeout as degraded,
    which keeps the node ready; a hard one (storage) makes it unavailable."""

    async def broken() -> None:
        raise ConnectionError

    async def stuck() -> None:
        await asyncio.Event().wait()

    async def fine() -> None:
        return None

    readiness = Readiness(
        {"storage": fine, "broker": soft(broken, 0.05), "other": soft(stuck, 0.05)}, 1
    )
    checks = await readiness.check()
    assert checks == {
        "storage": "ok",
        "broker": "degraded: ConnectionError",
        "other": "degraded: timed out",
    }
    assert is_ready(checks) and summary(checks) == "degraded"
    hard = await Readiness({"storage": broken, "broker": soft(fine, 1)}, 1).check()
    assert hard == {"storage": "unavailable: ConnectionError", "broker": "ok"}
    assert not is_ready(hard) and summary(hard) == "unavailable"
