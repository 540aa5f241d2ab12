"""Session-wide services: one real PostgreSQL cluster and one Redis for the suite.

Tests that need to stop or kill a service (fault injection) start their own
instances with :mod:`tests.services` instead of using these shared ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import (
    Postgres,
    Redis,
    running_postgres,
    running_redis,
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the whole session (skipped, or failed under CI, if absent)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A Redis server for the whole session (skipped, or failed under CI, if absent)."""
    with running_redis() as server:
        yield server
