"""Access logs never leak tokens or query strings (PROTOCOL section 1, Authentication)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import aiohttp
import pytest

from .helpers import (
    Api,
    ServerProcess,
    connect_ingest,
    expect_refusal,
    open_live,
    read_until_seq,
    running_server,
    send_json,
    transcript,
)

PATH_WITH_QUERY = re.compile(r"/(?:v1|live-transcript|healthz)[^\s\"']*\?")


@pytest.fixture(scope="module")
def logging_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the access log switched on."""
    env = {"SCRIBELINE_ACCESS_LOG": "true"}
    with running_server(tmp_path_factory.mktemp("accesslog") / "data", env) as srv:
        yield srv


async def test_access_log_has_no_tokens_and_no_query_strings(
    logging_server: ServerProcess,
) -> None:
    """With the access log on, requests are logged, but never a key nor any ?query string."""
    tenant = logging_server.create_tenant("logs")
    bogus_key = "scl_bogusbogusbogusbogusbogus"
    async with aiohttp.ClientSession() as session:
        api = Api(session, logging_server, tenant.rw)
        sid = (await api.create_call())["call_sid"]
        await api.post_transcript(sid, transcript("secret-free"))
        assert (await api.request("GET", "/v1/calls?status=in-progress&limit=2")).status == 200
        assert (await api.request("GET", f"/v1/calls/{sid}")).status == 200

    ws, _ = await open_live(logging_server, sid, tenant.read, since=1)
    async with ws:
        await read_until_seq(ws, 2)
    await expect_refusal(logging_server, f"/live-transcript/{sid}", bogus_key)
    async with await connect_ingest(logging_server, sid, tenant.write, method="query") as prod:
        await send_json(prod, transcript("via query token"))
        await prod.recv()

    # Access lines are written when a request finishes; wait for the stream's line.
    deadline = time.monotonic() + 10
    while f"/live-transcript/{sid}" not in logging_server.stderr_text():
        assert time.monotonic() < deadline, "no access line for the WebSocket request"
        await asyncio.sleep(0.1)
    log = logging_server.stderr_text()

    assert "/v1/calls" in log, "REST requests were not access-logged"
    for secret in (tenant.rw, tenant.read, tenant.write, bogus_key):
        assert secret not in log, "an API key appears in the log"
    assert "token=" not in log
    assert "status=in-progress" not in log
    leaked = PATH_WITH_QUERY.findall(log)
    assert not leaked, f"query strings in the access log: {leaked[:5]}"
