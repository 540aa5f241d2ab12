"""Alerts against a real server: rules over REST, finals that fire them, the
``alert`` events on the organization event stream, in the call's history and
in the calls snapshot, and the published Burki SDK skipping them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from burki import BurkiClient
from burki.models.realtime import CallStatusEvent, TranscriptEvent
from websockets.asyncio.client import ClientConnection, connect

from .helpers import (
    RECV_TIMEOUT,
    Api,
    ServerProcess,
    Tenant,
    assert_timestamp,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    send_json,
    transcript,
)

NEGATIVE = "This is terrible, I hate it"


@pytest.fixture(scope="module")
def tenant(server: ServerProcess) -> Tenant:
    """An organization of its own: its rules touch no other test's calls."""
    return server.create_tenant(f"alerts-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def admin_key(server: ServerProcess, tenant: Tenant) -> str:
    return server.create_key(tenant.org, "read,write,admin")


@pytest.fixture
def admin(http: Any, server: ServerProcess, admin_key: str) -> Api:
    return Api(http, server, admin_key)


async def _rule(api: Api, **body: Any) -> dict[str, Any]:
    resp = await api.request("POST", "/v1/alert-rules", json_body=body)
    assert resp.status == 201, resp.text
    assert isinstance(resp.body, dict)
    return resp.body


async def _events(server: ServerProcess, key: str, topic: str = "alert") -> ClientConnection:
    ws = await connect(
        f"{server.ws_base}/v1/events",
        additional_headers={"Authorization": f"Bearer {key}"},
        open_timeout=RECV_TIMEOUT,
    )
    assert (await recv_json(ws))["type"] == "connection_established"
    await send_json(ws, {"action": "subscribe", "topic": topic, "filter": "*"})
    assert (await recv_json(ws))["type"] == "subscribed"
    return ws


async def test_rules_are_managed_by_admins_of_their_organization(
    admin: Api, http: Any, server: ServerProcess, tenant: Tenant, tenant_b: Tenant
) -> None:
    """Create, read, change and delete a rule; writing needs ``admin``, reading
    ``read``; a bad pattern or settings of another kind are 422; another
    organization sees none of it."""
    rule = await _rule(admin, name="Refunds", kind="keyword", keywords=["refund"])
    assert rule["kind"] == "keyword" and rule["keywords"] == ["refund"]
    assert rule["speaker"] is None and rule["enabled"] is True
    assert_timestamp(rule["created_at"])
    path = f"/v1/alert-rules/{rule['id']}"
    reader, other = Api(http, server, tenant.read), Api(http, server, tenant_b.rw)
    refused = await reader.request("POST", "/v1/alert-rules", json_body={"name": "x"})
    assert refused.status == 403
    assert (await reader.request("GET", path)).body == rule
    assert (await other.request("GET", path)).status == 404
    assert (await other.request("DELETE", path, key=tenant_b.rw)).status in (403, 404)
    for bad in (
        {"name": "b", "kind": "regex", "pattern": r"(a)\1"},
        {"name": "b", "kind": "regex", "pattern": "x" * 513},
        {"name": "b", "kind": "keyword", "pattern": "x"},
        {"name": "b", "kind": "sentiment", "threshold": -2},
        {"name": "b", "kind": "keyword", "keywords": ["a"], "extra": 1},
    ):
        resp = await admin.request("POST", "/v1/alert-rules", json_body=bad)
        assert resp.status == 422, (bad, resp.text)
    changed = await admin.request(
        "PATCH", path, json_body={"keywords": ["money back"], "speaker": "user", "enabled": False}
    )
    assert changed.status == 200, changed.text
    assert (changed.body["keywords"], changed.body["speaker"], changed.body["enabled"]) == (
        ["money back"],
        "user",
        False,
    )
    wrong = await admin.request("PATCH", path, json_body={"pattern": "x"})
    assert wrong.status == 422
    listed = await reader.request("GET", "/v1/alert-rules")
    assert changed.body in listed.body["alert_rules"]
    assert (await admin.request("DELETE", path)).status == 204
    assert (await admin.request("GET", path)).status == 404
    assert (await admin.request("DELETE", path)).status == 404


async def test_finals_fire_rules_once_and_alerts_reach_every_reader(
    admin: Api, server: ServerProcess, tenant: Tenant
) -> None:
    """Keyword, regex and sentiment rules fire on finals only, once per rule and
    segment (a final sent again under its segment id does not fire again); each
    alert is on the org event stream, in the call's history (live transcript)
    and counted in the calls snapshot."""
    sid = new_sid()
    keyword = await _rule(admin, name="Cancel", kind="keyword", keywords=["cancel my account"])
    regex = await _rule(admin, name="Order", kind="regex", pattern=r"order #?\d{4,}")
    mood = await _rule(admin, name="Mood", kind="sentiment", threshold=-0.5, window=1,
                       speaker="user")  # fmt: skip
    api = Api(admin.session, server, tenant.rw)
    events = await _events(server, tenant.read)
    try:
        await api.create_call(sid)
        said = "Please cancel my account, order #12345"
        partial = transcript(said, speaker="user", is_final=False, segment_id="s1")
        await api.post_transcript(sid, partial)
        first = await api.post_transcript(sid, transcript(said, speaker="user", segment_id="s1"))
        received = [await recv_json(events) for _ in range(2)]
        again = await api.post_transcript(sid, transcript(said, speaker="user", segment_id="s1"))
        await api.post_transcript(sid, transcript(NEGATIVE, speaker="assistant"))
        sad = await api.post_transcript(sid, transcript(NEGATIVE, speaker="user", segment_id="s3"))
        received.append(await recv_json(events))
        # Every alert of a batch is stored before the batch is acknowledged: the last
        # one is in the snapshot now, and nothing more arrives.
        snapshot = await api.request("GET", "/v1/calls?include=latest&status=in-progress")
    finally:
        await events.close()
    assert [m["type"] for m in received] == ["alert"] * 3
    assert [m["call_sid"] for m in received] == [sid] * 3
    rules = [(m["data"]["rule"]["id"], m["data"]["segment_seq"]) for m in received]
    assert rules == [(keyword["id"], first), (regex["id"], first), (mood["id"], sad)]
    assert received[0]["data"] == {
        "rule": {"id": keyword["id"], "name": "Cancel", "kind": "keyword"},
        "segment_seq": first,
        "segment_id": "s1",
        "speaker": "user",
        "matched": "cancel my account",
        "number": 1,
    }
    assert received[1]["data"]["matched"] == "order #12345"
    assert received[2]["data"]["score"] <= -0.5 and received[2]["data"]["number"] == 3
    assert [m["seq"] for m in received] == [first + 1, first + 2, sad + 1]
    assert again == first + 3  # the same segment again: no alert between
    (call,) = [c for c in snapshot.body["calls"] if c["call_sid"] == sid]
    assert call["last_seq"] == sad + 1
    assert call["alerts"]["count"] == 3
    assert call["alerts"]["last"]["seq"] == sad + 1
    assert call["alerts"]["last"]["rule"]["name"] == "Mood"

    ws, _ = await open_live(server, sid, tenant.read)
    try:
        history = await read_until_seq(ws, sad + 1)
    finally:
        await ws.close()
    alerts = [m for m in history if m["type"] == "alert"]
    assert [m["seq"] for m in alerts] == [m["seq"] for m in received]
    assert [m["data"] for m in alerts] == [m["data"] for m in received]
    for rule in (keyword, regex, mood):
        assert (await admin.request("DELETE", f"/v1/alert-rules/{rule['id']}")).status == 204


async def test_the_burki_sdk_skips_alerts(
    admin: Api, server: ServerProcess, tenant: Tenant
) -> None:
    """The published SDK (burki 0.1.2) yields the transcripts and statuses of a
    call with alerts in its history and live, and nothing for the alerts."""
    rule = await _rule(admin, name="Refund", kind="keyword", keywords=["refund"])
    api = Api(admin.session, server, tenant.rw)
    sid = new_sid()
    await api.create_call(sid)
    await api.post_transcript(sid, transcript("I want a refund", speaker="user"))
    sdk = BurkiClient(api_key=tenant.read, base_url=server.base_url)
    try:
        async with sdk, sdk.realtime.live_transcript(sid) as stream:
            events = stream.__aiter__()
            async with asyncio.timeout(RECV_TIMEOUT):
                snapshot = await anext(events)
                await api.post_transcript(sid, transcript("a refund, now", speaker="user"))
                await api.post_status(sid, "completed")
                yielded = [event async for event in events]
    finally:
        await admin.request("DELETE", f"/v1/alert-rules/{rule['id']}")
    calls = (await api.request("GET", "/v1/calls?include=latest")).body["calls"]
    (call,) = [c for c in calls if c["call_sid"] == sid]
    assert call["alerts"]["count"] == 2  # there were alerts to skip
    assert isinstance(snapshot, CallStatusEvent)
    kinds = [type(e) for e in yielded]
    assert kinds == [CallStatusEvent, TranscriptEvent, TranscriptEvent, CallStatusEvent], yielded
    assert [e.content for e in yielded if isinstance(e, TranscriptEvent)] == [
        "I want a refund",
        "a refund, now",
    ]
