"""Revoking a key closes every WebSocket it authenticated, on every node (docs/protocol.md,
"Authentication"): streams opened with the key itself, with an access token, a bot
capability URL or a dashboard session's tokens minted from it; other keys' streams go on.

Each server's authentication cache is set so that the test tells the two ways a node
learns of a revocation apart: ``keys revoke`` on a single node's data directory tells
no process (memory:// broker), so its streams close when the node re-checks the keys of
its open sockets (``SCRIBELINE_AUTH_CACHE_SECONDS``, 1 s here); a sign-out or a
revocation announced over Redis closes them at once, well before a 60 s re-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from scribeline.client import AsyncClient, Backoff, StreamRefused
from scribeline.demo.phone import connected_message
from tests.e2e.cluster import Cluster, running_cluster
from tests.services import Postgres, running_redis

from .bot_helpers import create_bot, open_url
from .helpers import (
    RECV_TIMEOUT,
    Api,
    ServerProcess,
    assert_timestamp,
    collect_until_closed,
    connect_ingest,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    running_server,
    send_json,
    transcript,
)
from .media_helpers import MEDIA_ENV, media_url, wait_for_status
from .test_dashboard_session import Page, issue
from .test_media_stream import start

#: Open sockets are re-checked every second: `keys revoke` on the data directory
#: reaches this node no other way.
RECHECK_ENV = {**MEDIA_ENV, "SCRIBELINE_AUTH_CACHE_SECONDS": "1"}
#: A re-check only after 60 s: a close within RECV_TIMEOUT is the notice's doing.
NOTICE_ENV = {"SCRIBELINE_AUTH_CACHE_SECONDS": "60"}
#: A retried refusal would show: the SDK's first retry would wait 5 s.
SLOW_BACKOFF = Backoff(initial=5.0, maximum=5.0)


@pytest.fixture(scope="module")
def rechecking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("revoke-recheck") / "data", RECHECK_ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def notified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("revoke-notice") / "data", NOTICE_ENV) as srv:
        yield srv


# --------------------------------------------------------------------------- helpers


async def mint(api: Api, scopes: list[str]) -> str:
    """An access token minted from the API's key."""
    resp = await api.request("POST", "/v1/tokens", json_body={"scopes": scopes})
    assert resp.status == 201, resp.text
    token: str = resp.body["token"]
    return token


async def open_events(server: ServerProcess, token: str) -> ClientConnection:
    """``/v1/events`` with ``token`` as the dashboard sends it (the subprotocol),
    subscribed to every transcription."""
    ws = await connect(
        f"{server.ws_base}/v1/events",
        subprotocols=[Subprotocol(f"burki-token-{token}")],
        ping_interval=None,
        open_timeout=RECV_TIMEOUT,
        close_timeout=5,
    )
    assert (await recv_json(ws))["type"] == "connection_established"
    await send_json(ws, {"action": "subscribe", "topic": "transcription", "filter": "*"})
    assert (await recv_json(ws))["type"] == "subscribed"
    return ws


async def expect_revoked(ws: ClientConnection, *, message: bool = True) -> None:
    """The server closes ``ws`` with 1008 ``authentication_failed``, right after one
    ``error`` message of that code in formats that have error messages (what came
    before it is the stream's own history)."""
    msgs, code = await collect_until_closed(ws)
    assert (code, ws.close_reason) == (1008, "authentication_failed"), (code, ws.close_reason)
    errors = [msg for msg in msgs if msg.get("type") == "error"]
    if not message:
        assert msgs == [], msgs
        return
    assert errors == msgs[-1:], msgs
    assert errors[0]["error"] == "authentication_failed", errors
    assert_timestamp(errors[0]["timestamp"])


async def next_transcript(ws: ClientConnection, content: str) -> None:
    """The next event on an organization event stream is the transcript ``content``."""
    msg = await recv_json(ws)
    assert msg["type"] == "transcript" and msg["data"]["content"] == content, msg


# --------------------------------------------------------------------------- one node


async def test_keys_revoke_closes_every_stream_of_the_key_and_no_other(
    rechecking: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """After `scribeline keys revoke` a live transcript opened with the key, an event
    stream opened with an access token minted from it, a bot read-only URL it was handed
    and a media stream it authenticated all close with 1008 authentication_failed (the
    media stream's call then completes, as when its socket closes); the SDK's stream
    raises StreamRefused without retrying; a subscriber with another key of the same
    organization stays open and keeps receiving."""
    server = rechecking
    org = f"revoke-{uuid.uuid4().hex[:8]}"
    tenant = await asyncio.to_thread(server.create_tenant, org)
    doomed = await asyncio.to_thread(server.create_key, org, "read,write")
    api = Api(http, server, tenant.rw)
    as_doomed = Api(http, server, doomed)
    sid, media_sid = new_sid(), new_sid()
    await api.create_call(sid)
    token = await mint(as_doomed, ["read"])
    bot = await create_bot(as_doomed)

    live, _ = await open_live(server, sid, doomed)
    events = await open_events(server, token)
    bot_ws = await open_url(bot["websocket_read_only_url"])
    survivor, _ = await open_live(server, sid, tenant.read)
    media = await connect(media_url(server, doomed), close_timeout=5)
    await media.send(json.dumps(connected_message()))
    await media.send(json.dumps(start(media_sid)))
    await wait_for_status(api, media_sid, "in-progress")
    async with AsyncClient(server.base_url, api_key=doomed, backoff=SLOW_BACKOFF) as client:
        stream = client.live_transcript(sid)
        await anext(stream)  # the status snapshot: the SDK's stream is established

        async def sdk_events() -> list[Any]:
            return [event async for event in stream]

        sdk = asyncio.create_task(sdk_events())
        before = await api.post_transcript(sid, transcript("Before."))
        for ws in (live, survivor):
            await read_until_seq(ws, before)
        await next_transcript(events, "Before.")

        await asyncio.to_thread(server.cli, "keys", "revoke", doomed[:12])

        await expect_revoked(live)
        await expect_revoked(events)
        await expect_revoked(bot_ws, message=False)
        with pytest.raises(StreamRefused) as refused:
            await asyncio.wait_for(sdk, RECV_TIMEOUT)
        assert (refused.value.code, refused.value.close_code) == ("authentication_failed", 1008)
        assert stream.reconnects == 0
    _, code = await collect_until_closed(media)
    reason = (code, media.close_reason)
    assert reason == (1008, "authentication_failed: The credential was revoked"), reason
    await wait_for_status(api, media_sid, "completed")

    after = await api.post_transcript(sid, transcript("After."))
    (event,) = await read_until_seq(survivor, after)
    assert event["data"]["content"] == "After.", event
    await survivor.close()


#: Messages a test producer keeps unanswered at most (the server takes up to 1,024).
WINDOW = 200


async def test_a_producer_revoked_mid_stream_has_every_stored_line_acknowledged(
    rechecking: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """A producer pipelining transcripts when its key is revoked gets an answer to every
    message the server read, in order, then the authentication_failed error and a 1008
    close: the lines stored are exactly those acknowledged, each with its seq, and the
    messages past the last ack were never read (a retry duplicates nothing)."""
    server = rechecking
    org = f"revoke-{uuid.uuid4().hex[:8]}"
    tenant = await asyncio.to_thread(server.create_tenant, org)
    doomed = await asyncio.to_thread(server.create_key, org, "read,write")
    api = Api(http, server, tenant.rw)
    sid = new_sid()
    await api.create_call(sid)
    ws = await connect_ingest(server, sid, doomed, close_timeout=5)
    answers: list[dict[str, Any]] = []
    progress = asyncio.Event()
    sent = 0

    async def read_all() -> None:
        try:
            while True:
                answers.append(json.loads(await ws.recv()))
                progress.set()
        except ConnectionClosed:
            progress.set()

    async def send_all() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionClosed):
            while not reader.done():
                if sent - len(answers) >= WINDOW:
                    progress.clear()
                    await progress.wait()
                    continue
                await ws.send(json.dumps({**transcript(f"line {sent}"), "ref": sent}))
                sent += 1

    reader = asyncio.create_task(read_all())
    sender = asyncio.create_task(send_all())
    while not answers:  # the pipeline is flowing
        progress.clear()
        await progress.wait()
    await asyncio.to_thread(server.cli, "keys", "revoke", doomed[:12])
    await asyncio.wait_for(asyncio.gather(reader, sender), RECV_TIMEOUT)

    acks = [a for a in answers if a["type"] == "ack"]
    stored = [(t["seq"], t["content"]) for t in await api.final_transcript(sid)]
    assert stored == [(a["seq"], f"line {a['ref']}") for a in acks], (len(stored), len(acks))
    assert [a["ref"] for a in acks] == list(range(len(acks)))
    assert len(acks) < sent, "the revocation came after the last message"
    assert answers[len(acks) :] == answers[-1:], answers[len(acks) :]  # no other error
    assert answers[-1]["error"] == "authentication_failed", answers[-1]
    assert (ws.close_code, ws.close_reason) == (1008, "authentication_failed")


async def test_signing_out_closes_the_sessions_streams_at_once(
    notified: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """A dashboard session signed in with the CLI's link: its event stream (access token)
    and a captions stream (captions token) close with 1008 authentication_failed as soon
    as DELETE /dashboard/api/session signs it out, long before any re-check."""
    server = notified
    org = f"signout-{uuid.uuid4().hex[:8]}"
    tenant = await asyncio.to_thread(server.create_tenant, org)
    sid = new_sid()
    await Api(http, server, tenant.rw).create_call(sid)
    page = Page(http, server)
    body = await page.sign_in((await asyncio.to_thread(issue, server, org))[1])
    captions = await page.call("POST", "/dashboard/api/captions", {"call_sid": sid})
    assert captions.status == 201, captions.body

    events = await open_events(server, body["access_token"])
    caption, _ = await open_live(server, sid, captions.body["token"])
    signed_out = await page.call("DELETE", "/dashboard/api/session")
    assert signed_out.status == 204

    await expect_revoked(events)
    await expect_revoked(caption)


# --------------------------------------------------------------------------- two nodes


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[Cluster]:
    """Two nodes on one PostgreSQL database and a Redis of their own."""
    root: Path = tmp_path_factory.mktemp("revoke-cluster")
    with (
        running_redis() as redis,
        running_cluster(root, postgres.create_database(), redis.url, 2, NOTICE_ENV) as nodes,
    ):
        yield nodes


async def test_a_revocation_on_one_node_closes_streams_on_another(
    two_nodes: Cluster, http: aiohttp.ClientSession
) -> None:
    """Signing out through node A closes the session's event stream on node B, and
    `keys revoke` (run where the broker URL is set) closes a key's live transcript on
    node B, at once; another key's subscriber on node B keeps receiving."""
    node_a, node_b = two_nodes.nodes
    org = f"nodes-{uuid.uuid4().hex[:8]}"
    tenant = await asyncio.to_thread(two_nodes.create_tenant, org)
    doomed = await asyncio.to_thread(node_a.create_key, org, "read")
    api = Api(http, node_a, tenant.rw)
    sid = new_sid()
    await api.create_call(sid)
    page = Page(http, node_a)
    code = (await asyncio.to_thread(issue, node_a, org, env=two_nodes.node_env()))[1]
    body = await page.sign_in(code)

    events = await open_events(node_b, body["access_token"])
    live, _ = await open_live(node_b, sid, doomed)
    survivor, _ = await open_live(node_b, sid, tenant.read)

    assert (await page.call("DELETE", "/dashboard/api/session")).status == 204
    await expect_revoked(events)
    await asyncio.to_thread(node_a.cli, "keys", "revoke", doomed[:12])
    await expect_revoked(live)

    seq = await api.post_transcript(sid, transcript("Still here."))
    *_, event = await read_until_seq(survivor, seq)
    assert event["data"]["content"] == "Still here.", event
    await survivor.close()
