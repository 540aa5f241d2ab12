"""``X-Forwarded-*`` from a trusted proxy (``SCRIBELINE_TRUSTED_PROXIES``) set the
client's address, scheme and host for every handler; from anyone else they are ignored.

The test client connects from 127.0.0.1, so to the server with
``SCRIBELINE_TRUSTED_PROXIES=127.0.0.1`` it is the proxy, and to the other one it is
a client writing headers it has no say in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from .bot_helpers import MEETING_URL
from .helpers import Api, ServerProcess, open_live, running_server

PUBLIC = "scribe.example.com:8443"
FORWARDED = {
    # What nginx sends: a client's own X-Forwarded-For, then the address it saw.
    "X-Forwarded-For": "6.6.6.6, 203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": PUBLIC,
}


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that trusts 127.0.0.1 as its proxy, with the access log on."""
    env = {"SCRIBELINE_TRUSTED_PROXIES": "127.0.0.1", "SCRIBELINE_ACCESS_LOG": "true"}
    with running_server(tmp_path_factory.mktemp("proxied") / "data", env) as srv:
        yield srv


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the default: no trusted proxy."""
    env = {"SCRIBELINE_ACCESS_LOG": "true"}
    with running_server(tmp_path_factory.mktemp("direct") / "data", env) as srv:
        yield srv


def one_key(server: ServerProcess) -> str:
    """A read-write key of a new organization (two CLI runs, not a whole tenant's four)."""
    server.cli("orgs", "create", "proxied")
    return server.create_key("proxied", "read,write")


async def access_line(server: ServerProcess, marker: str) -> str:
    """The access-log line that contains ``marker`` (lines are written when a
    request ends, so it is waited for)."""
    deadline = time.monotonic() + 10
    while True:
        for line in server.stderr_text().splitlines():
            if marker in line:
                return line
        assert time.monotonic() < deadline, f"no access line with {marker!r}"
        await asyncio.sleep(0.05)  # the log is a file another process writes


async def bot_with_forwarded_headers(api: Api) -> dict[str, Any]:
    """``POST /v1/bots`` with :data:`FORWARDED`; the 201 body."""
    body = {"meeting_url": MEETING_URL, "bot_name": "Notetaker", "transcription_model": "realtime"}
    resp = await api.request("POST", "/v1/bots", json_body=body, headers=FORWARDED)
    assert resp.status == 201, resp.text
    assert isinstance(resp.body, dict)
    return resp.body


async def sign_in_answer(http: aiohttp.ClientSession, server: ServerProcess, origin: str) -> int:
    """The status of a sign-in with an unknown code from ``origin``: 403 when the
    Origin is refused as foreign, 401 when it is taken as the server's own."""
    async with http.post(
        server.base_url + "/dashboard/api/session",
        json={"code": "not-a-code"},
        headers={**FORWARDED, "Origin": origin},
    ) as resp:
        return resp.status


async def test_a_trusted_proxy_names_the_client_scheme_and_host(
    http: aiohttp.ClientSession, proxied: ServerProcess
) -> None:
    """Bot URLs are wss:// on the forwarded host, the dashboard takes the forwarded
    https origin as its own (and names it in its CSP), a WebSocket upgrade goes through,
    and the access log names the client from X-Forwarded-For, not the proxy."""
    key = one_key(proxied)
    api = Api(http, proxied, key)

    bot = await bot_with_forwarded_headers(api)
    assert bot["websocket_url"].startswith(f"wss://{PUBLIC}/v1/bots/"), bot
    assert bot["producer_url"].startswith(f"wss://{PUBLIC}/v1/bots/"), bot

    assert await sign_in_answer(http, proxied, f"https://{PUBLIC}") == 401
    assert await sign_in_answer(http, proxied, proxied.base_url) == 403

    async with http.get(proxied.base_url + "/dashboard/", headers=FORWARDED) as page:
        assert page.status == 200
        assert f"connect-src 'self' wss://{PUBLIC};" in page.headers["Content-Security-Policy"]

    sid = (await api.create_call())["call_sid"]
    ws, _ = await open_live(proxied, sid, key, additional_headers=FORWARDED)
    await ws.close()

    for marker in ('"POST /v1/bots"', f'"GET /live-transcript/{sid}"'):
        line = await access_line(proxied, marker)
        assert "203.0.113.7" in line, line
        assert "127.0.0.1" not in line and "6.6.6.6" not in line, line


async def test_without_trusted_proxies_the_headers_are_ignored(
    http: aiohttp.ClientSession, direct: ServerProcess
) -> None:
    """The same headers to a server that trusts no proxy change nothing: the request's
    own scheme, Host and peer address count."""
    api = Api(http, direct, one_key(direct))

    bot = await bot_with_forwarded_headers(api)
    assert bot["websocket_url"].startswith(f"{direct.ws_base}/v1/bots/"), bot

    assert await sign_in_answer(http, direct, f"https://{PUBLIC}") == 403
    assert await sign_in_answer(http, direct, direct.base_url) == 401

    line = await access_line(direct, '"POST /v1/bots"')
    assert "127.0.0.1" in line, line
    assert "203.0.113.7" not in direct.stderr_text()
