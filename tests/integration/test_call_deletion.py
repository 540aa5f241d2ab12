"""Deleting a call, retention sweeps and transcript exports against a real server
(docs/protocol.md: "Deleting a call", "Retention", "Transcript exports").

Deletion and exports run on the suite's shared server; the retention test has a
server of its own that sweeps every 0.3 s, and waits for its condition, not for a
timer. Calls that ended days ago are made through the store itself (the
server's SQLite file, from this process): nothing in the API backdates a call.
"""

from __future__ import annotations

import asyncio
import html
import io
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import srt
import webvtt

from scribeline.events import now_ms
from scribeline.storage import Storage, open_storage
from scribeline.storage.base_retention import DAY_MS
from tests.old_calls import EVENTS_PER_CALL, ended_bot, ended_call

from .helpers import (
    RECV_TIMEOUT,
    Api,
    ServerProcess,
    Tenant,
    collect_until_closed,
    expect_refusal,
    new_sid,
    open_live,
    running_server,
    transcript,
)

AUDIT = re.compile(r"call deleted: org=\d+ call_id=\d+ key_id=\d+ events=\d+")


@pytest.fixture(scope="module")
def sweeping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own that sweeps every 0.3 s."""
    data = tmp_path_factory.mktemp("retention") / "data"
    with running_server(data, {"SCRIBELINE_RETENTION_INTERVAL": "0.3"}) as server:
        server.cli("orgs", "create", "sweeping")
        yield server


@pytest.fixture(scope="module")
def sweeping_key(sweeping: ServerProcess) -> str:
    return sweeping.create_key("sweeping", "admin")


@pytest.fixture(scope="module")
def admin_a(server: ServerProcess, tenant_a: Tenant) -> str:
    return server.create_key(tenant_a.org, "admin")


@pytest.fixture(scope="module")
def admin_b(server: ServerProcess, tenant_b: Tenant) -> str:
    return server.create_key(tenant_b.org, "admin")


@pytest.fixture
async def store(sweeping: ServerProcess, tmp_path: Path) -> AsyncIterator[Storage]:
    """The sweeping server's own database, opened beside it."""
    storage = await open_storage(f"sqlite:///{sweeping.data_dir / 'scribeline.db'}", tmp_path)
    try:
        yield storage
    finally:
        await storage.close()


def _audits(server: ServerProcess) -> list[str]:
    return [line for line in server.stderr_text().splitlines() if "call deleted:" in line]


async def test_deleting_a_live_call_ends_it_and_removes_it_everywhere(
    server: ServerProcess, tenant_a: Tenant, admin_a: str, admin_b: str, api_a: Api
) -> None:
    """Only an admin of the call's organization may delete it (another one's gets
    404, a read key 403). A live call is ended first: its subscriber sees
    ``canceled`` and is closed. Then the call is gone from GET, the list and
    history, appends are refused, and the log says who deleted what with ids only."""
    api = api_a
    sid = new_sid()
    await api.create_call(sid)
    secret_text = f"my card is {new_sid()}"
    await api.post_transcript(sid, transcript(secret_text))
    ws, _ = await open_live(server, sid, tenant_a.read)
    audits = len(_audits(server))

    assert (await api.request("DELETE", f"/v1/calls/{sid}", key=admin_b)).status == 404
    assert (await api.request("DELETE", f"/v1/calls/{sid}", key=tenant_a.rw)).status == 403
    assert (await api.get_call(sid))["status"] == "in-progress"
    deleted = await api.request("DELETE", f"/v1/calls/{sid}", key=admin_a)
    assert deleted.status == 204, deleted.text

    messages, code = await collect_until_closed(ws)
    statuses = [m["status"] for m in messages if m.get("type") == "call_status"]
    assert statuses[-1:] == ["canceled"] and code == 1000
    assert (await api.request("GET", f"/v1/calls/{sid}")).status == 404
    listed = await api.request("GET", "/v1/calls?limit=200")
    assert sid not in {c["call_sid"] for c in listed.body["calls"]}
    refused, _ = await expect_refusal(server, f"/live-transcript/{sid}", tenant_a.read)
    assert refused["error"] == "not_found"
    append = await api.request("POST", f"/v1/calls/{sid}/transcripts", json_body=transcript())
    assert append.status == 404
    assert (await api.request("DELETE", f"/v1/calls/{sid}", key=admin_a)).status == 404

    (audit,) = _audits(server)[audits:]
    assert AUDIT.search(audit), audit
    log = server.stderr_text()
    assert sid not in log and secret_text not in log and admin_a not in log


async def test_a_sweep_deletes_expired_calls_and_bots_and_audits_counts(
    sweeping: ServerProcess, sweeping_key: str, store: Storage, http: aiohttp.ClientSession
) -> None:
    """With a retention of one day (``PATCH /v1/organization``), calls and a bot
    that ended two days ago are deleted by the server's sweeper; a call that ended
    an hour ago stays. The log has one line with the organization's counts, and
    no SID."""
    api = Api(http, sweeping, sweeping_key)
    org = await store.get_org("sweeping")
    assert org is not None
    old = [await ended_call(store, org.id, new_sid(), now_ms() - 2 * DAY_MS) for _ in range(2)]
    recent = await ended_call(store, org.id, new_sid(), now_ms() - 3_600_000)
    bot = await ended_bot(store, org.id, now_ms() - 2 * DAY_MS)
    assert (await api.request("GET", f"/v1/calls/{old[0].call_sid}")).status == 200
    retain = {"retention_days": 1}
    assert (await api.request("PATCH", "/v1/organization", json_body=retain)).status == 200
    try:
        async with asyncio.timeout(RECV_TIMEOUT):
            # The sweeper is another process's timer: nothing to await but its effect.
            while (await api.request("GET", f"/v1/bots/{bot.public_id}")).status != 404:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        forever = {"retention_days": None}
        assert (await api.request("PATCH", "/v1/organization", json_body=forever)).status == 200
    for call in old:
        assert (await api.request("GET", f"/v1/calls/{call.call_sid}")).status == 404
    assert (await api.get_call(recent.call_sid))["status"] == "completed"
    log = sweeping.stderr_text()
    expected = f"retention: org={org.id} deleted calls=2 events={2 * EVENTS_PER_CALL + 2} bots=1"
    assert [line for line in log.splitlines() if "retention:" in line][-1].endswith(expected)
    assert old[0].call_sid not in log


async def test_exports_in_four_formats(tenant_a: Tenant, tenant_b: Tenant, api_a: Api) -> None:
    """The final transcript (never partials, never a replaced final) in text, JSON,
    WebVTT and SRT, with speakers and timings, each with its content type, as an
    attachment; an unknown format is 422, another organization's call 404."""
    api = api_a
    sid = new_sid()
    await api.create_call(sid)
    await api.post_transcripts(
        sid,
        [
            transcript("partial", is_final=False, segment_id="a"),
            transcript("old final", speaker="user", segment_id="a"),
            transcript("a --> b <b>&</b>\n\nend", speaker="user", segment_id="a",
                       segment_start=1.0, segment_end=2.0),
            transcript("hello 日本", speaker="assistant", segment_start=2.5, segment_end=3.0),
        ],
    )  # fmt: skip
    await api.post_status(sid, "completed")
    bodies: dict[str, str] = {}
    for fmt, content_type in [
        ("txt", "text/plain; charset=utf-8"),
        ("json", "application/json"),
        ("vtt", "text/vtt; charset=utf-8"),
        ("srt", "application/x-subrip; charset=utf-8"),
    ]:
        resp = await api.request(
            "GET", f"/v1/calls/{sid}/transcript?format={fmt}", key=tenant_a.read
        )
        assert resp.status == 200, resp.text
        assert resp.headers["Content-Type"] == content_type
        assert resp.headers["Content-Disposition"] == f'attachment; filename="{sid}.{fmt}"'
        bodies[fmt] = resp.text
    cues = list(webvtt.from_buffer(io.StringIO(bodies["vtt"])))
    assert [(c.voice, html.unescape(c.text)) for c in cues] == [
        ("user", "a --> b <b>&</b>\nend"),
        ("assistant", "hello 日本"),
    ]
    assert [(c.start, c.end) for c in cues] == [
        ("00:00:01.000", "00:00:02.000"),
        ("00:00:02.500", "00:00:03.000"),
    ]
    subs = list(srt.parse(bodies["srt"]))
    assert [s.content for s in subs] == ["user: a -> b <b>&</b>\nend", "assistant: hello 日本"]
    segments = orjson.loads(bodies["json"])["segments"]
    assert [(s["speaker"], s["start"], s["end"]) for s in segments] == [
        ("user", 1.0, 2.0),
        ("assistant", 2.5, 3.0),
    ]
    assert bodies["txt"].splitlines() == [
        "[00:00:01] user: a --> b <b>&</b> end",
        "[00:00:02] assistant: hello 日本",
    ]
    bad = await api.request("GET", f"/v1/calls/{sid}/transcript?format=docx")
    assert bad.status == 422
    assert (
        await api.request("GET", f"/v1/calls/{sid}/transcript", key=tenant_b.read)
    ).status == 404


async def test_a_long_call_exports_every_final_across_pages(api_a: Api) -> None:
    """1,200 finals (more than two pages of the export's reads) come out once
    each, in order, as one JSON document."""
    api = api_a
    sid = new_sid()
    await api.create_call(sid)
    for start in (0, 600):
        await api.post_transcripts(
            sid, [transcript(f"line {i}", segment_id=f"s{i}") for i in range(start, start + 600)]
        )
    resp = await api.request("GET", f"/v1/calls/{sid}/transcript?format=json")
    assert resp.status == 200
    texts = [s["text"] for s in orjson.loads(resp.text)["segments"]]
    assert texts == [f"line {i}" for i in range(1200)]
