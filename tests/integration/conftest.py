"""Fixtures: real server processes on free ports, tenants made with the admin CLI, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from .helpers import Api, ServerProcess, Tenant, running_server
from .media_helpers import MEDIA_ENV

# Enough connections per call for the fan-out tests, and the small outgoing buffer that
# the slow-consumer test overflows.
FANOUT_ENV = {
    "SCRIBELINE_MAX_CONNECTIONS_PER_CALL": "200",
    "SCRIBELINE_SEND_BUFFER_BYTES": "262144",
}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shared server with default settings."""
    with running_server(tmp_path_factory.mktemp("default") / "data") as srv:
        yield srv


@pytest.fixture(scope="session")
def tenant_a(server: ServerProcess) -> Tenant:
    return server.create_tenant("acme")


@pytest.fixture(scope="session")
def tenant_b(server: ServerProcess) -> Tenant:
    return server.create_tenant("globex")


@pytest.fixture(scope="session")
def fanout_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that allows many connections per call and has a 256 KiB send buffer."""
    with running_server(tmp_path_factory.mktemp("fanout") / "data", FANOUT_ENV) as srv:
        yield srv


@pytest.fixture(scope="session")
def fanout_tenant(fanout_server: ServerProcess) -> Tenant:
    return fanout_server.create_tenant("fanout")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No cookie jar: the API takes no cookies, and the dashboard's session tests send
    # the session cookie by hand, per request.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


@pytest.fixture
def api_a(http: aiohttp.ClientSession, server: ServerProcess, tenant_a: Tenant) -> Api:
    """Tenant A's read-write REST client."""
    return Api(http, server, tenant_a.rw)


@pytest.fixture
def api_b(http: aiohttp.ClientSession, server: ServerProcess, tenant_b: Tenant) -> Api:
    """Tenant B's read-write REST client."""
    return Api(http, server, tenant_b.rw)


@pytest.fixture(scope="module")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of the module's own with a small speech-engine pool (``MEDIA_ENV``)."""
    with running_server(tmp_path_factory.mktemp("media") / "data", MEDIA_ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def media_tenant(media_server: ServerProcess) -> Tenant:
    return media_server.create_tenant("phones")


@pytest.fixture
async def media_api(
    http: aiohttp.ClientSession, media_server: ServerProcess, media_tenant: Tenant
) -> Api:
    """The media tenant's read-write REST client."""
    return Api(http, media_server, media_tenant.rw)
