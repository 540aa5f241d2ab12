"""Meeting bots (PROTOCOL section 4): REST, capability-token security, and the organization
event stream's ``meeting`` topic."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from .bot_helpers import MEETING_URL, create_bot, open_url, participant, produce, ts
from .helpers import (
    RECV_TIMEOUT,
    Api,
    ServerProcess,
    Tenant,
    assert_timestamp,
    expect_refusal,
    new_sid,
    recv_json,
    running_server,
    send_json,
    transcript,
)

BOT_FIELDS = {
    "id",
    "status",
    "meeting_url",
    "bot_name",
    "transcription_model",
    "created_at",
    "started_at",
    "ended_at",
    "stop_reason",
    "error",
}
URL_FIELDS = ("websocket_url", "websocket_read_only_url", "producer_url")
REALTIME = {"transcription_model": "realtime"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def nocache_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server without an authentication cache: a revoked key fails at once."""
    env = {"SCRIBELINE_AUTH_CACHE_SECONDS": "0"}
    with running_server(tmp_path_factory.mktemp("bots-nocache") / "data", env) as srv:
        yield srv


# --------------------------------------------------------------------------- helpers


def token_of(url: str) -> str:
    """The capability token in a URL's ``token`` query parameter."""
    (token,) = parse_qs(urlsplit(url).query)["token"]
    return token


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, read without verifying them."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims, dict)
    return claims


def flip_signature(token: str) -> str:
    """The token with one character in the middle of its signature changed."""
    header, payload, signature = token.split(".")
    i = len(signature) // 2
    swapped = "A" if signature[i] != "A" else "B"
    return f"{header}.{payload}.{signature[:i]}{swapped}{signature[i + 1 :]}"


def with_claims(token: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, _, signature = token.split(".")
    raw = json.dumps({**claims_of(token), **changes}).encode()
    forged = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def open_bot(
    server: ServerProcess, bot_id: str, endpoint: str, token: str, method: str = "query"
) -> ClientConnection:
    """Open ``/v1/bots/{id}/{endpoint}`` with ``token`` sent the given way."""
    url = f"{server.ws_base}/v1/bots/{bot_id}/{endpoint}"
    kwargs: dict[str, Any] = {}
    if method == "query":
        url += "?" + urlencode({"token": token})
    elif method == "header":
        kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
    else:
        kwargs["subprotocols"] = [Subprotocol(f"burki-token-{token}")]
    return await open_url(url, **kwargs)


async def expect_ws_refusal(
    server: ServerProcess, bot_id: str, token: str, reason: str = "forbidden", method: str = "query"
) -> None:
    """``/v1/bots/{id}/ws`` refuses: close 1008 with ``reason`` and no message before it."""
    ws = await open_bot(server, bot_id, "ws", token, method)
    try:
        raw = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"dropped without a close frame ({exc})"
        assert (exc.rcvd.code, exc.rcvd.reason) == (1008, reason), exc.rcvd
        return
    except TimeoutError:
        raise AssertionError(f"/ws with this token still open after {RECV_TIMEOUT} s") from None
    finally:
        await ws.close()
    raise AssertionError(f"a refused /ws must send no message, got {raw!r}")


async def expect_producer_refusal(
    server: ServerProcess, bot_id: str, token: str, error: str = "forbidden"
) -> dict[str, Any]:
    """``/v1/bots/{id}/producer`` refuses: one ``error`` message, then close 1008."""
    msg, _ = await expect_refusal(server, f"/v1/bots/{bot_id}/producer", token)
    assert msg["error"] == error, msg
    return msg


async def connect_events(server: ServerProcess, key: str) -> ClientConnection:
    """Open ``/v1/events`` and read its connection_established."""
    ws = await open_url(
        f"{server.ws_base}/v1/events", additional_headers={"Authorization": f"Bearer {key}"}
    )
    hello = await recv_json(ws)
    assert hello.get("type") == "connection_established", hello
    return ws


async def subscribe(ws: ClientConnection, topic: str, filter_: str) -> None:
    await send_json(ws, {"action": "subscribe", "topic": topic, "filter": filter_})
    ack = await recv_json(ws)
    assert ack == {"type": "subscribed", "topic": topic, "filter": filter_}, ack


async def read_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Read messages up to and including the first one for which ``done`` is true."""
    msgs: list[dict[str, Any]] = []
    while True:
        msgs.append(await recv_json(ws))
        if done(msgs[-1]):
            return msgs


async def new_campaign(api: Api) -> int:
    resp = await api.request("POST", "/v1/campaigns", json_body={"name": "Outreach"})
    assert resp.status == 201, resp.text
    campaign_id: int = resp.body["id"]
    return campaign_id


async def start_and_watch(bot: dict[str, Any]) -> None:
    """Prove a bot's URLs work: its producer's ``start`` reaches both subscriber URLs."""
    async with (
        await open_url(bot["websocket_url"]) as rw,
        await open_url(bot["websocket_read_only_url"]) as ro,
        await open_url(bot["producer_url"]) as producer,
    ):
        await produce(producer, "start")
        for ws in (rw, ro):
            assert await recv_json(ws) == {"type": "start", "data": {}}


async def bot_status(api: Api, bot_id: str) -> str:
    resp = await api.request("GET", f"/v1/bots/{bot_id}")
    assert resp.status == 200, resp.text
    status: str = resp.body["status"]
    return status


# --------------------------------------------------------------------------- capability tokens


async def test_capability_tokens_open_nothing_but_their_bot(
    server: ServerProcess, api_a: Api
) -> None:
    """Each of bot A's three tokens opens no other bot, call, campaign, event stream or REST
    endpoint, and the REST refusals change nothing."""
    bot_a, bot_b = await create_bot(api_a), await create_bot(api_a)
    a, b = bot_a["id"], bot_b["id"]
    await start_and_watch(bot_a)  # the tokens are valid where they belong
    sid, unborn = new_sid(), new_sid()
    await api_a.create_call(sid)
    campaign = await new_campaign(api_a)
    rest: list[tuple[str, str, Any]] = [
        ("GET", "/v1/calls", None),
        ("POST", "/v1/calls", {"call_sid": unborn, "to_phone_number": "+1234567890"}),
        ("GET", f"/v1/calls/{sid}", None),
        ("POST", f"/v1/calls/{sid}/transcripts", transcript("leak")),
        ("POST", f"/v1/calls/{sid}/status", {"status": "completed", "metadata": {}}),
        ("GET", "/v1/bots", None),
        ("GET", f"/v1/bots/{a}", None),
        ("POST", "/v1/bots", {"meeting_url": MEETING_URL, "bot_name": "x"} | REALTIME),
        ("POST", f"/v1/bots/{a}/stop", None),
        ("POST", "/v1/tokens", {}),
        ("GET", "/v1/campaigns", None),
        ("POST", "/v1/campaigns", {"name": "Sneaky"}),
        ("GET", f"/v1/campaigns/{campaign}", None),
        ("GET", "/v1/assistants", None),
    ]
    for field in URL_FIELDS:
        token = token_of(bot_a[field])
        await expect_ws_refusal(server, b, token)
        await expect_producer_refusal(server, b, token)
        for path in (
            f"/live-transcript/{sid}",
            f"/v1/ingest/{sid}",
            f"/ws/campaigns/{campaign}/progress",
            "/v1/events",
        ):
            msg, _ = await expect_refusal(server, path, token)
            assert msg["error"] == "forbidden", (field, path, msg)
        for method, path, body in rest:
            kwargs = {} if body is None else {"json_body": body}
            resp = await api_a.request(method, path, key=token, **kwargs)
            assert resp.status in (401, 403), (field, method, path, resp.status, resp.text)
            expected = "forbidden" if resp.status == 403 else "authentication_failed"
            assert resp.body["error"] == expected, (field, method, path, resp.body)
        # REST refuses any credential in the query string before looking at it.
        resp = await api_a.request("GET", f"/v1/bots/{a}?token={token}", key=None)
        assert resp.status == 422, (field, "query token", resp.status, resp.text)
        assert resp.body["error"] == "invalid_request"

    assert await bot_status(api_a, a) == "recording", "a capability token stopped its bot"
    assert (await api_a.get_call(sid))["status"] == "in-progress"
    assert (await api_a.request("GET", f"/v1/calls/{unborn}")).status == 404


async def test_each_token_opens_only_its_own_endpoint(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """The producer token does not open /ws, the subscriber tokens do not open /producer, and
    no API key (admin included) or access token opens /ws, however it is sent."""
    bot = await create_bot(api_a)
    bot_id = bot["id"]
    await expect_ws_refusal(server, bot_id, token_of(bot["producer_url"]))
    for field in ("websocket_url", "websocket_read_only_url"):
        await expect_producer_refusal(server, bot_id, token_of(bot[field]))

    admin = server.create_key(tenant_a.org, "admin")
    minted = []
    for scopes in (["read"], ["read", "write"]):
        resp = await api_a.request("POST", "/v1/tokens", json_body={"scopes": scopes})
        assert resp.status == 201, resp.text
        minted.append(resp.body["token"])
    for credential in (tenant_a.rw, tenant_a.read, tenant_a.write, admin, *minted):
        await expect_ws_refusal(server, bot_id, credential)
    for method in ("header", "subprotocol"):
        await expect_ws_refusal(server, bot_id, admin, method=method)
        await expect_ws_refusal(server, bot_id, token_of(bot["producer_url"]), method=method)


async def test_tampered_capability_tokens_fail_authentication(
    server: ServerProcess, api_a: Api
) -> None:
    """A capability token with a flipped signature character, or with its ``cap`` or ``bot``
    claim changed, is refused with authentication_failed everywhere."""
    bot, other = await create_bot(api_a), await create_bot(api_a)
    bot_id = bot["id"]
    rw, ro = token_of(bot["websocket_url"]), token_of(bot["websocket_read_only_url"])
    producer = token_of(bot["producer_url"])
    assert claims_of(ro)["cap"] == "read-only" and claims_of(ro)["bot"] == bot_id

    for forged in (flip_signature(rw), flip_signature(ro), with_claims(ro, cap="read-write")):
        for method in ("query", "header", "subprotocol"):
            await expect_ws_refusal(server, bot_id, forged, "authentication_failed", method)
    await expect_ws_refusal(
        server, other["id"], with_claims(rw, bot=other["id"]), "authentication_failed"
    )
    for forged in (flip_signature(producer), with_claims(ro, cap="producer")):
        await expect_producer_refusal(server, bot_id, forged, "authentication_failed")
    resp = await api_a.request("GET", f"/v1/bots/{bot_id}", key=flip_signature(rw))
    assert resp.status == 401 and resp.body["error"] == "authentication_failed", resp.text


# --------------------------------------------------------------------------- organizations


async def test_other_organizations_cannot_see_or_drive_a_bot(
    server: ServerProcess, tenant_b: Tenant, api_a: Api, api_b: Api
) -> None:
    """Tenant B gets 404 for A's bot (look-up, stop), never lists it, and its key is refused
    on A's producer with the same not_found as an unknown bot."""
    bot = await create_bot(api_a)
    bot_id, random_id = bot["id"], str(uuid.uuid4())
    own = await create_bot(api_b)

    for method, path in (("GET", f"/v1/bots/{bot_id}"), ("POST", f"/v1/bots/{bot_id}/stop")):
        resp = await api_b.request(method, path)
        assert resp.status == 404 and resp.body["error"] == "not_found", (path, resp.text)
    resp = await api_b.request("GET", "/v1/bots?limit=200")
    assert resp.status == 200, resp.text
    listed = {b["id"] for b in resp.body["bots"]}
    assert own["id"] in listed and bot_id not in listed

    foreign = await expect_producer_refusal(server, bot_id, tenant_b.rw, "not_found")
    unknown = await expect_producer_refusal(server, random_id, tenant_b.rw, "not_found")
    assert foreign["message"] == unknown["message"].replace(random_id, bot_id)
    assert bot_id not in json.dumps({k: v for k, v in foreign.items() if k != "message"})
    # B's own bot's tokens do not reach A's bot either.
    await expect_ws_refusal(server, bot_id, token_of(own["websocket_url"]))
    await expect_producer_refusal(server, bot_id, token_of(own["producer_url"]))
    assert await bot_status(api_a, bot_id) == "joining"


# --------------------------------------------------------------------------- REST


async def test_create_validates_its_body(tenant_a: Tenant, api_a: Api) -> None:
    """Missing fields, a non-http(s) or malformed meeting_url, a bad bot_name or model and
    unknown fields are 422; bad JSON is 400; a read key gets 403."""
    good = {"meeting_url": MEETING_URL, "bot_name": "Notetaker", "transcription_model": "x"}
    bodies: list[Any] = [
        {k: v for k, v in good.items() if k != "meeting_url"},
        {k: v for k, v in good.items() if k != "bot_name"},
        {k: v for k, v in good.items() if k != "transcription_model"},
        good | {"meeting_url": "ftp://meet.example.com/abc"},
        good | {"meeting_url": "not a url"},
        good | {"meeting_url": "https://meet.example.com/" + "a" * 2048},
        good | {"meeting_url": 42},
        good | {"bot_name": ""},
        good | {"bot_name": "x" * 101},
        good | {"transcription_model": ""},
        good | {"transcription_model": "m" * 101},
        good | {"webhook": "https://evil.example.com"},
        [good],
    ]
    for body in bodies:
        resp = await api_a.request("POST", "/v1/bots", json_body=body)
        assert resp.status == 422, f"{body}: {resp.status} {resp.text}"
        assert resp.body["error"] == "invalid_request", resp.body
    resp = await api_a.request("POST", "/v1/bots", data=b'{"meeting_url": ')
    assert resp.status == 400 and resp.body["error"] == "invalid_json", resp.text
    resp = await api_a.request("POST", "/v1/bots", json_body=good, key=tenant_a.read)
    assert resp.status == 403 and resp.body["error"] == "forbidden", resp.text
    resp = await api_a.request("POST", "/v1/bots", json_body=good | {"bot_name": "x" * 100})
    assert resp.status == 201, resp.text


async def test_urls_follow_the_model_and_the_callers_scopes(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A realtime bot gets all three URLs (fresh capability tokens, no-store); another model
    gets only producer_url; a read key sees only the read-only URL."""
    resp = await api_a.request(
        "POST",
        "/v1/bots",
        json_body={"meeting_url": MEETING_URL, "bot_name": "Notetaker"} | REALTIME,
    )
    assert resp.status == 201, resp.text
    assert resp.headers.get("Cache-Control") == "no-store"
    bot = resp.body
    assert set(bot) == BOT_FIELDS | set(URL_FIELDS), set(bot)
    assert bot["status"] == "joining" and bot["meeting_url"] == MEETING_URL
    assert bot["bot_name"] == "Notetaker" and bot["transcription_model"] == "realtime"
    assert_timestamp(bot["created_at"])
    assert [bot[k] for k in ("started_at", "ended_at", "stop_reason", "error")] == [None] * 4
    base = f"{server.ws_base}/v1/bots/{bot['id']}"
    for field, path, cap in (
        ("websocket_url", "ws", "read-write"),
        ("websocket_read_only_url", "ws", "read-only"),
        ("producer_url", "producer", "producer"),
    ):
        assert bot[field].startswith(f"{base}/{path}?token="), bot[field]
        claims = claims_of(token_of(bot[field]))
        assert (claims["bot"], claims["cap"]) == (bot["id"], cap), claims
        assert "scopes" not in claims and claims["exp"] - claims["iat"] == 86_400, claims

    resp = await api_a.request("GET", f"/v1/bots/{bot['id']}")
    assert resp.status == 200 and resp.headers.get("Cache-Control") == "no-store"
    assert token_of(resp.body["websocket_url"]) != token_of(bot["websocket_url"])

    resp = await api_a.request("GET", f"/v1/bots/{bot['id']}", key=tenant_a.read)
    assert resp.status == 200 and resp.headers.get("Cache-Control") == "no-store"
    assert resp.body["websocket_read_only_url"].startswith(f"{base}/ws?token=")
    assert resp.body["websocket_url"] is None and resp.body["producer_url"] is None

    other = await create_bot(api_a, model="nova-2")
    assert other["websocket_url"] is None and other["websocket_read_only_url"] is None
    assert other["producer_url"].startswith(f"{server.ws_base}/v1/bots/{other['id']}/producer?")
    async with await open_url(other["producer_url"]) as producer:
        assert await produce(producer, "start") >= 1  # it still runs and stores events
    assert await bot_status(api_a, other["id"]) == "recording"


async def test_list_is_newest_first_and_validated(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """The list is newest first, filters by status, honours limit, carries no URLs, and
    refuses limit=0, limit=500 and an unknown status with 422."""
    org = f"bots-list-{uuid.uuid4().hex[:8]}"
    server.cli("orgs", "create", org)
    api = Api(http, server, server.create_key(org, "read,write"))
    ids = [(await create_bot(api, name=f"Bot {i}"))["id"] for i in range(4)]
    resp = await api.request("POST", f"/v1/bots/{ids[1]}/stop")
    assert resp.status == 200, resp.text

    resp = await api.request("GET", "/v1/bots")
    assert resp.status == 200, resp.text
    assert [b["id"] for b in resp.body["bots"]] == ids[::-1]
    assert all(set(b) == BOT_FIELDS for b in resp.body["bots"]), resp.body
    for query, expected in (
        ("?status=finished", [ids[1]]),
        ("?status=joining", [ids[3], ids[2], ids[0]]),
        ("?status=recording", []),
        ("?limit=2", [ids[3], ids[2]]),
        ("?status=joining&limit=1", [ids[3]]),
        ("?limit=200", ids[::-1]),
    ):
        resp = await api.request("GET", "/v1/bots" + query)
        assert resp.status == 200, (query, resp.text)
        assert [b["id"] for b in resp.body["bots"]] == expected, query
    for query in ("?limit=0", "?limit=500", "?limit=201", "?limit=-1", "?limit=x", "?status=bogus"):
        resp = await api.request("GET", "/v1/bots" + query)
        assert resp.status == 422 and resp.body["error"] == "invalid_request", (query, resp.text)


async def test_unknown_and_ended_bots(api_a: Api) -> None:
    """An unknown id is 404; once a bot has ended its URLs are null and stopping it is 409."""
    for bot_id in (str(uuid.uuid4()), "x" * 65):
        for method, path in (("GET", f"/v1/bots/{bot_id}"), ("POST", f"/v1/bots/{bot_id}/stop")):
            resp = await api_a.request(method, path)
            assert resp.status == 404 and resp.body["error"] == "not_found", (path, resp.text)

    bot = await create_bot(api_a)
    resp = await api_a.request("POST", f"/v1/bots/{bot['id']}/stop")
    assert resp.status == 200 and resp.headers.get("Cache-Control") == "no-store", resp.text
    assert resp.body["status"] == "finished" and resp.body["stop_reason"] == "manually_stopped"
    assert_timestamp(resp.body["ended_at"])
    assert [resp.body[f] for f in URL_FIELDS] == [None] * 3, resp.body
    resp = await api_a.request("GET", f"/v1/bots/{bot['id']}")
    assert resp.status == 200 and [resp.body[f] for f in URL_FIELDS] == [None] * 3, resp.body
    resp = await api_a.request("POST", f"/v1/bots/{bot['id']}/stop")
    assert resp.status == 409 and resp.body["error"] == "bot_ended", resp.text


# --------------------------------------------------------------------------- event stream


def is_event(bot_id: str, kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("bot_id") == bot_id and m.get("type") == kind


async def test_meeting_topic_delivers_bot_events_by_organization_and_filter(
    server: ServerProcess, tenant_a: Tenant, tenant_b: Tenant, api_a: Api, api_b: Api
) -> None:
    """``meeting``/``*`` gets every event of the organization's bots in order, a bot-id filter
    only that bot's, another organization nothing, and a transcription subscriber nothing."""
    bot1, bot2, foreign_bot = (
        await create_bot(api_a),
        await create_bot(api_a),
        await create_bot(api_b),
    )
    sid = new_sid()
    await api_a.create_call(sid)
    every = await connect_events(server, tenant_a.read)
    only1 = await connect_events(server, tenant_a.read)
    transcripts = await connect_events(server, tenant_a.read)
    other_org = await connect_events(server, tenant_b.read)
    async with every, only1, transcripts, other_org:
        await subscribe(every, "meeting", "*")
        await subscribe(only1, "meeting", bot1["id"])
        await subscribe(transcripts, "transcription", "*")
        await subscribe(other_org, "meeting", "*")

        sent: list[tuple[str, int, str, dict[str, Any]]] = []
        chat = {"username": "Ann", "content": "Hi all", "user_avatar": None}
        async with (
            await open_url(bot1["producer_url"]) as p1,
            await open_url(bot2["producer_url"]) as p2,
        ):
            for producer, bot, kind, data in (
                (p1, bot1, "start", {}),
                (p2, bot2, "start", {}),
                (p1, bot1, "participant-tracked", participant("p1", "Ann")),
                (p2, bot2, "ts", ts("Other meeting.", 0.1, 0.9)),
                (p1, bot1, "ts", ts("Hello.", 0.5, 1.4, 0, "Ann")),
                (p1, bot1, "chat-message", chat),
                (p2, bot2, "started-speaking", participant("p9")),
                (p1, bot1, "stop", {}),
            ):
                sent.append((bot["id"], await produce(producer, kind, data), kind, data))

        got = await read_until(every, is_event(bot1["id"], "stop"))
        for msg in got:
            assert set(msg) == {"type", "bot_id", "seq", "data"}, msg
        assert [(m["bot_id"], m["seq"], m["type"], m["data"]) for m in got] == sent
        for bot in (bot1, bot2):
            seqs = [m["seq"] for m in got if m["bot_id"] == bot["id"]]
            assert seqs == sorted(set(seqs)) and seqs[0] >= 1, seqs

        got = await read_until(only1, is_event(bot1["id"], "stop"))
        assert [(m["bot_id"], m["seq"]) for m in got] == [
            (b, seq) for b, seq, _, _ in sent if b == bot1["id"]
        ]

        marker = await api_a.post_transcript(sid, transcript("marker"))
        msg = await recv_json(transcripts)
        assert (msg["type"], msg["call_sid"], msg["seq"]) == ("transcript", sid, marker), msg

        async with await open_url(foreign_bot["producer_url"]) as producer:
            seq = await produce(producer, "start")
        msg = await recv_json(other_org)
        assert msg == {"type": "start", "bot_id": foreign_bot["id"], "seq": seq, "data": {}}, (
            f"organization B saw another organization's bot event first: {msg}"
        )


# --------------------------------------------------------------------------- revocation


async def test_revoking_the_creating_key_disables_the_bots_urls(
    nocache_server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """After `scribeline keys revoke` of the key that created a bot, every URL the creation
    handed out is refused (authentication_failed) while the bot stays readable to others."""
    server = nocache_server
    tenant = server.create_tenant(f"bots-revoke-{uuid.uuid4().hex[:8]}")
    creator = server.create_key(tenant.org, "read,write")
    bot = await create_bot(Api(http, server, creator))
    await start_and_watch(bot)

    server.cli("keys", "revoke", creator[:12])
    for field in ("websocket_url", "websocket_read_only_url"):
        await expect_ws_refusal(server, bot["id"], token_of(bot[field]), "authentication_failed")
    await expect_producer_refusal(
        server, bot["id"], token_of(bot["producer_url"]), "authentication_failed"
    )
    api = Api(http, server, tenant.rw)
    resp = await api.request("GET", f"/v1/bots/{bot['id']}", key=creator)
    assert resp.status == 401 and resp.body["error"] == "authentication_failed", resp.text
    assert await bot_status(api, bot["id"]) == "recording"


async def test_urls_belong_to_the_key_they_were_handed_to(
    nocache_server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """A look-up's URLs carry the looking-up key (``sub``): revoking the bot's creator
    leaves them working, revoking the key that looked them up stops them."""
    server = nocache_server
    tenant = server.create_tenant(f"bots-lookup-{uuid.uuid4().hex[:8]}")
    creator = server.create_key(tenant.org, "read,write")
    looker = server.create_key(tenant.org, "read,write")
    created = await create_bot(Api(http, server, creator))
    resp = await Api(http, server, looker).request("GET", f"/v1/bots/{created['id']}")
    assert resp.status == 200, resp.text
    looked_up = resp.body
    for field in URL_FIELDS:
        assert (
            claims_of(token_of(created[field]))["sub"]
            != claims_of(token_of(looked_up[field]))["sub"]
        ), field

    server.cli("keys", "revoke", creator[:12])
    ws = await open_url(looked_up["websocket_url"])
    async with ws, await open_url(looked_up["producer_url"]) as producer:
        await produce(producer, "start")
        msg = await recv_json(ws)
        assert msg == {"type": "start", "data": {}}, msg

    server.cli("keys", "revoke", looker[:12])
    ws = await open_url(looked_up["websocket_read_only_url"])
    async with ws:
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "authentication_failed")
