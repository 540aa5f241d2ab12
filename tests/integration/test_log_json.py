"""JSON logs over a whole run: one object per line, with its request or connection
id, and never a credential or transcript text (docs/operations.md, "Logs")."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from .bot_helpers import create_bot, open_url, produce, ts
from .helpers import (
    OP_TEXT,
    TIMESTAMP_RE,
    Api,
    RawWebSocket,
    ServerProcess,
    connect_ingest,
    expect_refusal,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    running_server,
    send_json,
    transcript,
)
from .test_access_log import PATH_WITH_QUERY
from .test_bot_streams import synced
from .test_campaigns import add_contacts, create_campaign, open_progress, start
from .test_event_stream import act, connect_events

#: JSON lines at INFO, the access log on, this machine's connections as a trusted
#: proxy's (so that a proxy's ``X-Request-ID`` is honoured).
ENV = {
    "SCRIBELINE_LOG_FORMAT": "json",
    "SCRIBELINE_LOG_LEVEL": "INFO",
    "SCRIBELINE_ACCESS_LOG": "true",
    "SCRIBELINE_TRUSTED_PROXIES": "127.0.0.1",
}
ID_RE = re.compile(r"^[0-9a-f]{16}$")
CODE_RE = re.compile(r"#code=(scd_[A-Za-z0-9_-]+)$")
ACCESS_FIELDS = {"method", "path", "status", "duration_ms", "remote", "request_id"}


class Secrets:
    """Everything that must not appear in the log: credentials and transcript text."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        #: Words said in transcripts, captions and bot speech: unique to this run.
        self.word = f"zq{uuid.uuid4().hex[:10]}"

    def add(self, *values: str | None) -> None:
        self.values.update(v for v in values if v)

    def said(self, text: str) -> str:
        """``text`` with the run's word in it."""
        return f"{text} {self.word} {self.word.upper()}"

    def from_url(self, url: str) -> str:
        token = parse_qs(urlsplit(url).query)["token"][0]
        self.add(token)
        return url


async def _rest(api: Api, secrets: Secrets, sid: str) -> dict[str, str]:
    """Calls, transcripts, tokens, bad requests; the ids the answers carried, by name."""
    ids: dict[str, str] = {}
    await api.create_call(sid)
    await api.post_transcript(sid, transcript(secrets.said("REST final")))
    await api.post_transcripts(sid, [transcript(secrets.said("batch"), is_final=False)])
    await api.post_status(sid, "in-progress", {"note": secrets.said("metadata")})
    listed = await api.request("GET", f"/v1/calls/{sid}?limit=5")
    assert listed.status == 200
    ids["get"] = listed.headers["X-Request-ID"]
    minted = await api.request("POST", "/v1/tokens", json_body={})
    assert minted.status == 201, minted.text
    secrets.add(minted.body["token"])

    broken = '{"content": "' + secrets.said("half")  # invalid JSON
    bad = await api.request(
        "POST",
        f"/v1/calls/{sid}/transcripts",
        data=broken,
        headers={"Content-Type": "application/json"},
    )
    assert bad.status == 400, bad.text
    ids["bad"] = bad.headers["X-Request-ID"]
    wrong = await api.request(
        "POST", f"/v1/calls/{sid}/transcripts", json_body={"content": [secrets.said("typed")]}
    )
    assert wrong.status == 422, wrong.text
    forged = minted.body["token"][:-4] + "AAAA"
    bogus = "scl_" + uuid.uuid4().hex
    secrets.add(forged, bogus)
    for key in (forged, bogus):
        assert (await api.request("GET", "/v1/calls", key=key)).status == 401
        assert (await api.request("GET", f"/v1/calls?token={key}", key=None)).status == 422
    proxied = await api.request("GET", "/healthz", headers={"X-Request-ID": "edge-7f.3_a"})
    assert proxied.headers["X-Request-ID"] == "edge-7f.3_a"
    ids["proxied"] = "edge-7f.3_a"
    for unsafe in (bogus, "x" * 65, "a b"):
        answer = await api.request("GET", "/healthz", headers={"X-Request-ID": unsafe})
        assert ID_RE.match(answer.headers["X-Request-ID"]), answer.headers
    return ids


async def _live(server: ServerProcess, api: Api, secrets: Secrets, sid: str, token: str) -> None:
    """Subscribers by query token and subprotocol, the producer WebSocket, a refusal."""
    by_query, _ = await open_live(server, sid, token, since=0)
    by_subprotocol, _ = await open_live(server, sid, token, method="subprotocol", since=0)
    async with by_query, by_subprotocol:
        async with await connect_ingest(server, sid, api.key, method="query") as producer:
            await send_json(producer, transcript(secrets.said("producer")))
            ack = await recv_json(producer)
            assert ack["type"] == "ack", ack
            await producer.send('{"content": "' + secrets.said("not json"))
            assert (await recv_json(producer))["type"] == "error"
        for ws in (by_query, by_subprotocol):
            msgs = await read_until_seq(ws, ack["seq"])
            assert secrets.word in msgs[-1]["data"]["content"]
    await expect_refusal(server, f"/live-transcript/{sid}", "scl_" + uuid.uuid4().hex)


async def _protocol_break(server: ServerProcess, sid: str, token: str) -> None:
    """A subscriber that sends a reserved opcode: the server logs it from the socket's
    callback, which runs in no task of the connection's."""
    raw = await RawWebSocket.connect(server, f"/live-transcript/{sid}?token={token}")
    assert raw.status == 101
    frame = await raw.read_frame()
    assert frame is not None and frame[0] == OP_TEXT
    await raw.send_frame(0x3, b"")
    while await raw.read_frame() is not None:
        pass
    raw.close()


async def _bot(api: Api, secrets: Secrets) -> None:
    """A meeting bot's producer and subscriber with what was said."""
    bot = await create_bot(api, name=secrets.said("Notetaker"))
    producer = await open_url(secrets.from_url(bot["producer_url"]))
    subscriber = await open_url(secrets.from_url(bot["websocket_url"]))
    secrets.from_url(bot["websocket_read_only_url"])
    async with producer, subscriber:
        await synced(subscriber)
        assert await produce(producer, "start") == 1
        await produce(producer, "ts", ts(secrets.said("the bot heard"), 0.0, 1.0, 0, "Ann"))
        while (msg := await recv_json(subscriber)).get("type") != "ts":
            pass
        assert secrets.word in json.dumps(msg)
        await produce(producer, "stop", {"reason": "meeting_ended"})


async def _events_and_campaign(server: ServerProcess, api: Api, secrets: Secrets) -> None:
    """The organization event stream sees a transcript; a campaign's progress stream."""
    events = await connect_events(server, api.key or "", method="query")
    async with events:
        await act(events, "transcription", "*")
        sid = new_sid()
        await api.create_call(sid)
        await api.post_transcript(sid, transcript(secrets.said("event stream")))
        while (msg := await recv_json(events)).get("type") != "transcript":
            pass
        assert secrets.word in json.dumps(msg)
    cid = (await create_campaign(api))["id"]
    await add_contacts(api, cid, {"phone_number": "+14155550001", "name": secrets.said("Ada")})
    await start(api, cid)
    progress, _ = await open_progress(server, cid, api.key or "")
    await progress.close()


async def _dashboard(
    http: aiohttp.ClientSession, server: ServerProcess, org: str, secrets: Secrets, sid: str
) -> None:
    """Sign in with a CLI code: the session cookie, a refreshed token, captions."""
    out = server.cli("dashboard", "--org", org, "--url", server.base_url)
    match = CODE_RE.search(out.strip().splitlines()[-1])
    assert match is not None, out
    code = match.group(1)
    secrets.add(code)
    url = server.base_url + "/dashboard/api/"
    origin = {"Origin": server.base_url}
    async with http.post(url + "session", json={"code": code}, headers=origin) as signed:
        assert signed.status == 201, await signed.text()
        secrets.add((await signed.json())["access_token"])
        cookie = signed.cookies["scribeline_session"].value
    secrets.add(cookie)
    with_cookie = {**origin, "Cookie": f"scribeline_session={cookie}"}
    async with http.post(url + "token", headers=with_cookie) as refreshed:
        secrets.add((await refreshed.json())["access_token"])
    async with http.post(url + "captions", json={"call_sid": sid}, headers=with_cookie) as cap:
        assert cap.status == 201, await cap.text()
        secrets.add((await cap.json())["token"])
    async with http.post(url + "session", json={"code": code}, headers=origin) as again:
        assert again.status == 401  # a used code, refused


def _lines(text: str) -> list[dict[str, Any]]:
    """Every line of the log as an object; each must be one."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"a log line that is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), line
        assert TIMESTAMP_RE.match(record.get("timestamp", "")), record
        assert {"level", "logger", "message"} <= record.keys(), record
        records.append(record)
    return records


async def test_a_whole_run_logs_json_with_ids_and_nothing_secret(tmp_path: Path) -> None:
    """Traffic on every surface (REST, tokens, subscribers, producers, bots, the event
    stream, campaigns, dashboard sign-in, bad requests); then every stderr line is a
    JSON object, access lines carry their request's id and fields, a connection's line
    its connection id, and no key, token, code, cookie or transcript word appears."""
    secrets = Secrets()
    with running_server(tmp_path / "data", ENV) as server:
        server.cli("orgs", "create", "logs")
        key = server.create_key("logs", "read,write")
        secrets.add(key)
        sid = new_sid()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            api = Api(http, server, key)
            ids = await _rest(api, secrets, sid)
            token = (await api.request("POST", "/v1/tokens", json_body={})).body["token"]
            secrets.add(token)
            await _live(server, api, secrets, sid, token)
            await _protocol_break(server, sid, token)
            await _bot(api, secrets)
            await _events_and_campaign(server, api, secrets)
            await _dashboard(http, server, "logs", secrets, sid)
        assert server.stop() == 0
        text = server.stderr_text()

    records = _lines(text)
    access = [r for r in records if r["logger"] == "scribeline.access"]
    assert len(access) > 20, f"too few access lines: {len(access)}"
    for record in access:
        assert record.keys() >= ACCESS_FIELDS, record
        assert ID_RE.match(record["request_id"]) or record["request_id"] == ids["proxied"]
        assert "?" not in record["path"] and isinstance(record["duration_ms"], float)
        assert record["remote"] == "127.0.0.1"
    by_id = {r["request_id"]: r for r in access}
    assert by_id[ids["get"]]["path"] == f"/v1/calls/{sid}" and by_id[ids["get"]]["status"] == 200
    assert by_id[ids["bad"]]["status"] == 400 and by_id[ids["bad"]]["method"] == "POST"
    assert by_id[ids["proxied"]]["path"] == "/healthz"
    assert len(by_id) == len(access), "two requests shared an id"
    upgrades = [r for r in access if r["status"] == 101]
    assert {"/live-transcript/" + sid, "/v1/events", f"/v1/ingest/{sid}"} <= {
        r["path"] for r in upgrades
    }
    broke = [r for r in records if "broke the protocol" in r["message"]]
    assert len(broke) == 1 and ID_RE.match(broke[0].get("connection_id", "")), broke

    assert secrets.word not in text.lower() and secrets.word.upper() not in text
    leaked = sorted(s[:12] for s in secrets.values if s in text)
    assert not leaked, f"secrets in the log: {leaked}"
    assert "token=" not in text and not PATH_WITH_QUERY.findall(text)
