"""``CallService.for_append``, the cache of calls known to exist that every REST
append reads: two services over one database stand for two nodes, on every
backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from scribeline.broker import open_broker
from scribeline.cluster import Signals, open_cluster
from scribeline.errors import CallEnded, NotFound
from scribeline.ingest.calls import CallService
from scribeline.ingest.campaigns import CampaignService
from scribeline.ingest.models import CreateCall, Transcript
from scribeline.ingest.publish import Publisher
from scribeline.storage import Storage


@pytest.fixture
async def nodes(storage: Storage) -> AsyncIterator[tuple[CallService, CallService]]:
    """Two call services on one database, each with its own cache (two nodes)."""
    made: list[tuple[Signals, CampaignService]] = []
    services = []
    for _ in range(2):
        signals = Signals(open_cluster("memory://"))
        publisher = Publisher(open_broker("memory://"))
        campaigns = CampaignService(storage, publisher, 1.0, signals.cluster)
        made.append((signals, campaigns))
        services.append(CallService(storage, publisher, campaigns, signals))
    yield services[0], services[1]
    for signals, campaigns in made:
        await campaigns.close()
        await signals.close()


def _line(text: str) -> list[Transcript]:
    return [Transcript(content=text, speaker="user")]


async def test_a_call_created_on_another_node_is_found(
    storage: Storage, nodes: tuple[CallService, CallService]
) -> None:
    """A call not found is not remembered as missing: once another node creates
    it, the next append here finds it, and appends to it land on its stream."""
    a, b = nodes
    org = await storage.create_org("acme")
    with pytest.raises(NotFound):
        await a.for_append(org.id, "CA1")
    created = await b.create(org.id, CreateCall(call_sid="CA1"))
    found = await a.for_append(org.id, "CA1")
    assert (found.id, found.stream) == (created.id, created.stream)
    (stored,) = await a.append_transcripts(found, _line("hello"))
    assert stored.stream == created.stream and stored.seq == 2


async def test_a_cached_call_is_per_organization(
    storage: Storage, nodes: tuple[CallService, CallService]
) -> None:
    """The same SID in two organizations is two calls: a cached one of the first
    is never the second's, nor found for an organization without it."""
    a, _ = nodes
    acme, other, empty = [await storage.create_org(n) for n in ("acme", "other", "empty")]
    mine = await a.create(acme.id, CreateCall(call_sid="CA1"))
    theirs = await a.create(other.id, CreateCall(call_sid="CA1"))
    assert (await a.for_append(acme.id, "CA1")).id == mine.id
    assert (await a.for_append(other.id, "CA1")).id == theirs.id
    with pytest.raises(NotFound):
        await a.for_append(empty.id, "CA1")


async def test_a_call_ended_on_another_node_refuses_appends_through_the_cache(
    storage: Storage, nodes: tuple[CallService, CallService]
) -> None:
    """The cached call's status is not what guards an ended call: storage is, so
    an append through a call cached before another node ended it is refused."""
    a, b = nodes
    org = await storage.create_org("acme")
    await b.create(org.id, CreateCall(call_sid="CA1"))
    cached = await a.for_append(org.id, "CA1")
    await a.append_transcripts(cached, _line("before"))
    await b.set_status(await b.get(org.id, "CA1"), "completed", {})
    again = await a.for_append(org.id, "CA1")
    assert again.status == cached.status  # still the cached row
    with pytest.raises(CallEnded):
        await a.append_transcripts(again, _line("after"))
