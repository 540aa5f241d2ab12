"""A lost *tail* that only the broker's gap report (through the probe) can reveal.

Node 0 publishes straight to Redis; nodes 1 and 2 reach Redis only through a
proxy. The proxy blackholes nodes 1 and 2's Redis path (sockets stay open),
node 0 appends the last events of the call (published fine, but nodes 1 and 2
never receive them) and nothing more is written. The periodic position check
is 300 s, so only the probe -> reconnect attempts -> on_gap -> position check
path can deliver the tail within the bound.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.followers import Follower, assert_exactly_once, stored_seqs
from tests.e2e.test_faults import ThreadedProxy
from tests.integration.helpers import Api, ServerProcess, Tenant, new_sid, transcript
from tests.services import Postgres, Redis, running_redis

ENV = {
    "SCRIBELINE_BROKER_PROBE_INTERVAL": "0.5",
    "SCRIBELINE_BROKER_TIMEOUT": "1.0",
    "SCRIBELINE_POSITION_CHECK_INTERVAL": "300",
}

pytestmark = pytest.mark.timeout(120)


@dataclass
class SplitCluster(Cluster):
    direct_url: str = ""

    def _start_node(self, number: int) -> ServerProcess:
        env = self.node_env()
        if number == 0:
            env["SCRIBELINE_BROKER_URL"] = self.direct_url
        node = ServerProcess(data_dir=self.root / f"node{number}" / "data", env_overrides=env)
        node.start()
        return node


@pytest.fixture(scope="module")
def tail_redis() -> Iterator[Redis]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(tail_redis: Redis) -> Iterator[ThreadedProxy]:
    server = ThreadedProxy(tail_redis.port)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def split(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: Postgres,
    tail_redis: Redis,
    proxy: ThreadedProxy,
) -> Iterator[SplitCluster]:
    cluster = SplitCluster(
        tmp_path_factory.mktemp("split"),
        postgres.create_database(),
        proxy.proxy.url(),
        3,
        dict(ENV),
        direct_url=tail_redis.url,
    )
    try:
        yield cluster.start()  # type: ignore[misc]
    finally:
        cluster.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_lost_tail_behind_a_half_open_path_arrives_within_seconds(
    split: SplitCluster,
    http: aiohttp.ClientSession,
    postgres: Postgres,
    proxy: ThreadedProxy,
) -> None:
    """The last events are published while nodes 1 and 2's Redis path is half-open:
    their followers get them, exactly once, within 10 s (the periodic check is 300 s)."""
    tenant: Tenant = split.create_tenant("tail")
    for _ in range(2):
        sid = new_sid()
        rest = Api(http, split.nodes[0], tenant.rw)
        await rest.create_call(sid)
        followers = [Follower(split, sid, tenant.read, start=n).begin() for n in (1, 2)]
        for follower in followers:
            await follower.joined()
        await rest.post_transcripts(sid, [transcript(f"a{i}") for i in range(10)])
        for follower in followers:
            await follower.seen(11)
        proxy.sever()
        try:
            tail = await rest.post_transcripts(sid, [transcript(f"t{i}") for i in range(5)])
            started = time.monotonic()
            for follower in followers:
                received = await follower.finish(tail[-1], within=10)
                assert_exactly_once(received, stored_seqs(postgres, split.database, sid))
            assert time.monotonic() - started < 10
            assert all(f.connections == 1 for f in followers), "a follower had to resume"
        finally:
            proxy.resume()
