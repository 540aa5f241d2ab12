"""The client SDK's ``ssl_context`` verifies an https:// and wss:// server with a
private CA, for REST and streams; without it that server's certificate is refused."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import trustme
from aiohttp import web

from scribeline.client import AsyncClient, Backoff, ConnectionFailedError, ReconnectFailed


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _call(request: web.Request) -> web.Response:
    return web.json_response({"call_sid": request.match_info["sid"]})


async def _bot(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_json({"type": "joined", "data": {"over": "tls"}})
    await ws.close(code=1000)
    return ws


@pytest.fixture
async def tls_base(ca: trustme.CA) -> AsyncIterator[str]:
    """A small HTTPS and WSS server on loopback with a certificate for localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    app = web.Application()
    app.router.add_get("/v1/calls/{sid}", _call)
    app.router.add_get("/bot", _bot)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://localhost:{port}"
    finally:
        await runner.cleanup()


async def test_a_private_ca_is_trusted_through_ssl_context(ca: trustme.CA, tls_base: str) -> None:
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with AsyncClient(tls_base, api_key="k", ssl_context=trusting) as client:
        assert await client.request("GET", "/v1/calls/CA1") == {"call_sid": "CA1"}
        stream = client.bot_stream("wss" + tls_base.removeprefix("https") + "/bot")
        events = [event async for event in stream]
    assert [(e.type, e.data) for e in events] == [("joined", {"over": "tls"})]


async def test_without_it_the_private_ca_is_refused(tls_base: str) -> None:
    once = Backoff(max_attempts=1)
    async with AsyncClient(tls_base, api_key="k", backoff=once) as client:
        with pytest.raises(ConnectionFailedError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.request("GET", "/v1/calls/CA1")
        stream = client.bot_stream("wss" + tls_base.removeprefix("https") + "/bot")
        with pytest.raises(ReconnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            _ = [event async for event in stream]
