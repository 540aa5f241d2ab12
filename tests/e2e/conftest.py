"""A three-node cluster per test module, on its own database and its own Redis.

Redis pub/sub channels are global to a Redis server, so each cluster gets its
own ``redis-server`` (it starts in milliseconds); the PostgreSQL cluster is the
session's, with a fresh database per module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster, running_cluster
from tests.integration.helpers import Tenant
from tests.services import Postgres, Redis, running_redis


@pytest.fixture(scope="module")
def cluster_redis() -> Iterator[Redis]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres, cluster_redis: Redis
) -> Iterator[Cluster]:
    """Three nodes sharing one database and one Redis."""
    with running_cluster(
        tmp_path_factory.mktemp("cluster"), postgres.create_database(), cluster_redis.url
    ) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def tenant(cluster: Cluster) -> Tenant:
    return cluster.create_tenant("acme")
