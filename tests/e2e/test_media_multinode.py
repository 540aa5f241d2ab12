"""Live audio on two nodes sharing PostgreSQL and Redis: a stream on one node is
heard on another, settings changed on one node apply on the other at once, and a
call carried by streams on two nodes ends with the last of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.cluster import Cluster, running_cluster
from tests.integration.helpers import Api, Tenant, new_sid, open_live, recv_json
from tests.integration.media_helpers import MEDIA_ENV, RECORDING, play, wait_for_status
from tests.services import Postgres, Redis

TWILIO_TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


@pytest.fixture(scope="module")
def media_cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres, cluster_redis: Redis
) -> Iterator[Cluster]:
    """Two nodes, each with its own local speech engine."""
    with running_cluster(
        tmp_path_factory.mktemp("media-cluster"),
        postgres.create_database(),
        cluster_redis.url,
        size=2,
        env=MEDIA_ENV,
    ) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def org(media_cluster: Cluster) -> Tenant:
    return media_cluster.create_tenant("phones")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def test_audio_on_one_node_is_heard_on_another(
    media_cluster: Cluster, org: Tenant, http: aiohttp.ClientSession
) -> None:
    """Partials then finals, in seq order, reach a subscriber on the other node."""
    sid = new_sid()
    node0, node1 = media_cluster.nodes
    api1 = Api(http, node1, org.rw)
    player = asyncio.create_task(play(node0, sid, org.write, speed=2.0, tracks=["inbound"]))
    await wait_for_status(api1, sid, "in-progress")
    ws, _ = await open_live(node1, sid, org.read, since=0)
    events = []
    async with ws:
        while True:
            try:
                events.append(await recv_json(ws, within=90))
            except ConnectionClosed:
                break
    await player
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finals = [e["data"] for e in events if e["type"] == "transcript" and e["data"]["is_final"]]
    heard = " ".join(d["content"] for d in finals).lower()
    assert "hiking" in heard or "boots" in heard, heard
    assert events[-1]["type"] == "call_status" and events[-1]["status"] == "completed"


async def test_a_twilio_token_stored_on_one_node_signs_streams_on_the_other_at_once(
    media_cluster: Cluster, org: Tenant, http: aiohttp.ClientSession
) -> None:
    node0, node1 = media_cluster.nodes
    public = f"wss://127.0.0.1:{node0.port}/v1/media-stream"
    # Node 0 learns that no organization signs with this token (and caches that).
    with pytest.raises(InvalidStatus) as refused:
        await play(node0, new_sid(), auth_token=TWILIO_TOKEN, signature_url=public)
    assert refused.value.response.status_code == 401
    admin = media_cluster.nodes[0].create_key(org.org, "admin")
    resp = await Api(http, node1, org.rw).request(
        "PATCH", "/v1/speech", json_body={"twilio_auth_token": TWILIO_TOKEN}, key=admin
    )
    assert resp.status == 200
    # Stored through node 1, accepted by node 0 at once: the change reached its cache.
    sid = new_sid()
    result = await play(node0, sid, auth_token=TWILIO_TOKEN, signature_url=public, cut_after=0.5)
    assert result.aborted and result.received == []
    await wait_for_status(Api(http, node0, org.rw), sid, "completed")


async def test_a_call_streamed_through_two_nodes_ends_with_its_last_stream(
    media_cluster: Cluster, org: Tenant, http: aiohttp.ClientSession
) -> None:
    """One <Stream> per track, each on another node: the inbound one is cut early;
    the call stays open for the outbound one, whose last line is stored."""
    sid = new_sid()
    node0, node1 = media_cluster.nodes
    short = play(node0, sid, org.write, tracks=["inbound"], speed=4.0, cut_after=3.0)
    full = play(node1, sid, org.write, tracks=["outbound"], speed=2.0)
    early, late = await asyncio.gather(short, full)
    assert early.aborted and not late.server_closed
    await wait_for_status(Api(http, node0, org.rw), sid, "completed")
    history = await Api(http, node0, org.rw).final_transcript(sid)
    last_agent_line = [u for u in RECORDING.utterances if u.track == "outbound"][-1]
    outbound = [d for d in history if d["speaker"] == "assistant"]
    assert outbound and outbound[-1]["segment_start"] > last_agent_line.start - 1.0, outbound
