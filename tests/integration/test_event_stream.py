"""The organization event stream ``GET /v1/events`` (PROTOCOL section 3)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

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

TOPICS = ("transcription", "call_status", "campaign")
SUBSCRIPTION_LIMIT = 3


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that allows 3 subscriptions per event-stream connection."""
    env = {"SCRIBELINE_MAX_SUBSCRIPTIONS_PER_CONNECTION": str(SUBSCRIPTION_LIMIT)}
    with running_server(tmp_path_factory.mktemp("events-limit") / "data", env) as srv:
        yield srv


# --------------------------------------------------------------------------- helpers


async def connect_events(
    server: ServerProcess, key: str, *, method: str = "header"
) -> ClientConnection:
    """Open ``/v1/events`` and read its connection_established."""
    url = f"{server.ws_base}/v1/events"
    kwargs: dict[str, Any] = {}
    if method == "header":
        kwargs["additional_headers"] = {"Authorization": f"Bearer {key}"}
    else:
        url += f"?token={key}"
    ws = await connect(
        url, ping_interval=None, open_timeout=RECV_TIMEOUT, close_timeout=5, **kwargs
    )
    hello = await recv_json(ws)
    assert hello.get("type") == "connection_established", hello
    assert_timestamp(hello["timestamp"])
    return ws


async def act(ws: ClientConnection, topic: str, filter_: str, action: str = "subscribe") -> None:
    """Subscribe or unsubscribe and check the acknowledgement."""
    await send_json(ws, {"action": action, "topic": topic, "filter": filter_})
    ack = await recv_json(ws)
    kind = "subscribed" if action == "subscribe" else "unsubscribed"
    assert ack == {"type": kind, "topic": topic, "filter": filter_}, ack


async def expect_error(ws: ClientConnection, code: str) -> dict[str, Any]:
    msg = await recv_json(ws)
    assert msg.get("type") == "error" and msg.get("error") == code, msg
    assert isinstance(msg.get("message"), str) and msg["message"], msg
    assert_timestamp(msg.get("timestamp"))
    return msg


async def read_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool], within: float = RECV_TIMEOUT
) -> list[dict[str, Any]]:
    """Read messages up to and including the first one for which ``done`` is true."""
    msgs: list[dict[str, Any]] = []
    while True:
        msg = await recv_json(ws, within)
        msgs.append(msg)
        if done(msg):
            return msgs


def is_transcript(sid: str, content: str) -> Callable[[dict[str, Any]], bool]:
    def check(msg: dict[str, Any]) -> bool:
        return (
            msg.get("type") == "transcript"
            and msg.get("call_sid") == sid
            and msg["data"]["content"] == content
        )

    return check


def check_transcript(msg: dict[str, Any]) -> None:
    """The per-call transcript shape of PROTOCOL section 1."""
    assert msg["type"] == "transcript", msg
    assert isinstance(msg["call_sid"], str) and isinstance(msg["seq"], int), msg
    assert_timestamp(msg["timestamp"])
    data = msg["data"]
    assert {"content", "speaker", "is_final", "confidence", "segment_start", "segment_end"} <= set(
        data
    ), data


def check_status(msg: dict[str, Any]) -> None:
    """The per-call status shape of PROTOCOL section 1."""
    assert msg["type"] == "call_status", msg
    assert isinstance(msg["call_sid"], str) and isinstance(msg["seq"], int), msg
    assert isinstance(msg["status"], str) and isinstance(msg["metadata"], dict), msg
    assert_timestamp(msg["timestamp"])


async def create_assistant(api: Api, name: str) -> int:
    resp = await api.request("POST", "/v1/assistants", json_body={"name": name})
    assert resp.status == 201, f"create assistant: {resp.status} {resp.text}"
    assert resp.body["transcription_enabled"] is True and resp.body["is_default"] is False
    assistant_id = resp.body["id"]
    assert isinstance(assistant_id, int)
    return assistant_id


async def new_campaign(api: Api, n: int, **fields: Any) -> tuple[int, list[int]]:
    """A running campaign with ``n`` contacts; returns its id and its contact ids."""
    resp = await api.request("POST", "/v1/campaigns", json_body={"name": "Outreach", **fields})
    assert resp.status == 201, resp.text
    cid = resp.body["id"]
    resp = await api.request(
        "POST",
        f"/v1/campaigns/{cid}/contacts",
        json_body=[{"phone_number": f"+1415555{i:04d}"} for i in range(n)],
    )
    assert resp.status == 201, resp.text
    contacts = [c["id"] for c in resp.body["contacts"]]
    resp = await api.request("POST", f"/v1/campaigns/{cid}/start")
    assert resp.status == 200, resp.text
    return cid, contacts


async def set_outcome(api: Api, cid: int, contact_id: int, result: str) -> None:
    resp = await api.request(
        "POST",
        f"/v1/campaigns/{cid}/contacts/{contact_id}/outcome",
        json_body={"outcome": result},
    )
    assert resp.status == 200, f"outcome: {resp.status} {resp.text}"


async def mint(api: Api, **body: Any) -> str:
    resp = await api.request("POST", "/v1/tokens", json_body=body)
    assert resp.status == 201, f"mint: {resp.status} {resp.text}"
    token = resp.body["token"]
    assert isinstance(token, str)
    return token


# --------------------------------------------------------------------------- tests


async def test_subscribe_acks_invalid_messages_and_the_limit(
    server: ServerProcess,
    tenant_a: Tenant,
    limit_server: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    """Each action is acknowledged; invalid messages get invalid_message and the connection
    stays open; past the subscription limit rate_limited, still open, nothing subscribed."""
    sid = new_sid()
    async with await connect_events(server, tenant_a.read) as ws:
        await act(ws, "transcription", "*")
        await act(ws, "call_status", sid)
        await act(ws, "campaign", "assistant:7")
        await act(ws, "transcription", "*", "unsubscribe")
        await act(ws, "call_status", sid, "unsubscribe")

        invalid: list[Any] = [
            "not json",
            "[]",
            {"action": "publish", "topic": "transcription", "filter": "*"},
            {"topic": "transcription", "filter": "*"},
            {"action": "subscribe", "topic": "calls", "filter": "*"},
            {"action": "subscribe", "filter": "*"},
            {"action": "subscribe", "topic": "transcription", "filter": "assistant:abc"},
            {"action": "subscribe", "topic": "transcription", "filter": "no spaces allowed"},
            {"action": "subscribe", "topic": "transcription", "filter": 42},
        ]
        for message in invalid:
            if isinstance(message, str):
                await ws.send(message)
            else:
                await send_json(ws, message)
            await expect_error(ws, "invalid_message")
        await ws.send(b'{"action":"subscribe","topic":"transcription","filter":"*"}')
        await expect_error(ws, "invalid_message")
        await act(ws, "call_status", "*")  # still open and working

    tenant = limit_server.create_tenant("subscriber")
    api = Api(http, limit_server, tenant.rw)
    sid_a, sid_b, sid_c = new_sid(), new_sid(), new_sid()
    for s in (sid_a, sid_b, sid_c):
        await api.create_call(s)
    async with await connect_events(limit_server, tenant.read) as ws:
        await act(ws, "transcription", sid_a)
        await act(ws, "transcription", sid_b)
        await act(ws, "call_status", sid_a)
        await send_json(ws, {"action": "subscribe", "topic": "transcription", "filter": sid_c})
        await expect_error(ws, "rate_limited")
        await act(ws, "transcription", sid_a)  # a subscription already held is not a new one

        # The refused subscription delivers nothing: C's transcript never precedes A's marker.
        await api.post_transcript(sid_c, transcript("refused"))
        await api.post_transcript(sid_a, transcript("marker"))
        msgs = await read_until(ws, is_transcript(sid_a, "marker"))
        assert [m["call_sid"] for m in msgs] == [sid_a], msgs

        await act(ws, "transcription", sid_b, "unsubscribe")
        await act(ws, "transcription", sid_c)  # room again
        await api.post_transcript(sid_c, transcript("accepted"))
        msgs = await read_until(ws, is_transcript(sid_c, "accepted"))
        assert len(msgs) == 1, msgs


async def test_filters_select_calls_topics_and_assistants(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """``*`` gets every call, a SID only that call, ``assistant:<id>`` only that assistant's
    calls, call_status only statuses; after unsubscribe nothing more arrives."""
    other_assistant = await create_assistant(api_a, f"Sales {uuid.uuid4().hex[:6]}")
    sid1, sid2, sid3 = new_sid(), new_sid(), new_sid()
    await api_a.create_call(sid1)
    await api_a.create_call(sid2)
    call3 = await api_a.create_call(sid3, assistant_id=other_assistant)
    assert call3["assistant_id"] == other_assistant

    every = await connect_events(server, tenant_a.read)
    only1 = await connect_events(server, tenant_a.read, method="query")
    only_assistant = await connect_events(server, tenant_a.read)
    statuses = await connect_events(server, tenant_a.read)
    async with every, only1, only_assistant, statuses:
        await act(every, "transcription", "*")
        await act(every, "transcription", sid1)  # overlaps "*": still one copy per event
        await act(only1, "transcription", sid1)
        await act(only_assistant, "transcription", f"assistant:{other_assistant}")
        await act(statuses, "call_status", "*")

        posted: dict[str, list[int]] = {sid1: [], sid2: [], sid3: []}
        status_seqs: dict[str, list[int]] = {sid1: [], sid2: [], sid3: []}
        for round_ in range(3):
            for sid in (sid1, sid2, sid3):
                posted[sid].append(await api_a.post_transcript(sid, transcript(f"{sid} {round_}")))
        status_seqs[sid2].append(await api_a.post_status(sid2, "in-progress", {"note": "hold"}))
        status_seqs[sid3].append(await api_a.post_status(sid3, "in-progress"))
        # Markers, published after everything above.
        posted[sid1].append(await api_a.post_transcript(sid1, transcript("end 1")))
        posted[sid3].append(await api_a.post_transcript(sid3, transcript("end 3")))
        status_seqs[sid1].append(await api_a.post_status(sid1, "completed"))

        got = await read_until(every, is_transcript(sid3, "end 3"))
        for msg in got:
            check_transcript(msg)
        assert Counter((m["call_sid"], m["seq"]) for m in got) == Counter(
            (sid, seq) for sid, seqs in posted.items() for seq in seqs
        ), "'*' must deliver each transcript of every call exactly once"
        assert [m["seq"] for m in got if m["call_sid"] == sid1] == posted[sid1]

        got = await read_until(only1, is_transcript(sid1, "end 1"))
        assert {m["call_sid"] for m in got} == {sid1}, [m["call_sid"] for m in got]
        assert [m["seq"] for m in got] == posted[sid1]
        assert [m["data"]["content"] for m in got] == [f"{sid1} {r}" for r in range(3)] + ["end 1"]

        got = await read_until(only_assistant, is_transcript(sid3, "end 3"))
        assert {m["call_sid"] for m in got} == {sid3}, [m["call_sid"] for m in got]
        assert [m["seq"] for m in got] == posted[sid3]

        got = await read_until(
            statuses, lambda m: m.get("call_sid") == sid1 and m.get("status") == "completed"
        )
        for msg in got:
            check_status(msg)
        assert [(m["call_sid"], m["seq"], m["status"]) for m in got] == [
            (sid2, status_seqs[sid2][0], "in-progress"),
            (sid3, status_seqs[sid3][0], "in-progress"),
            (sid1, status_seqs[sid1][0], "completed"),
        ]
        assert got[0]["metadata"]["note"] == "hold"
        assert got[1]["metadata"]["assistant_id"] == other_assistant
        # A call ending does not end an organization stream that follows it.
        await act(statuses, "call_status", sid2)

        # Unsubscribing one filter stops exactly its events; the connection stays subscribed
        # to the rest (sid3 here, through "*").
        await act(every, "transcription", sid1, "unsubscribe")
        await act(every, "transcription", "*", "unsubscribe")
        await act(every, "transcription", sid2)
        await api_a.post_transcript(sid3, transcript("after unsubscribe"))
        marker = await api_a.post_transcript(sid2, transcript("marker"))
        got = await read_until(every, is_transcript(sid2, "marker"))
        assert [(m["call_sid"], m["seq"]) for m in got] == [(sid2, marker)], got


async def test_organizations_are_isolated(
    server: ServerProcess,
    tenant_a: Tenant,
    tenant_b: Tenant,
    api_a: Api,
    api_b: Api,
) -> None:
    """Two organizations publishing at once: each ``*`` subscriber gets every event of its own
    organization exactly once and nothing of the other's."""
    per_call = 15

    async def prepare(api: Api) -> dict[str, Any]:
        cid, contacts = await new_campaign(api, 3)
        linked = new_sid()
        await api.create_call(linked, campaign_contact_id=contacts[0])
        return {
            "api": api,
            "campaign": cid,
            "contacts": contacts,
            "calls": [linked, new_sid(), new_sid()],
            "marker": new_sid(),
        }

    orgs = [await prepare(api_a), await prepare(api_b)]
    for org in orgs:
        for sid in [*org["calls"][1:], org["marker"]]:
            await org["api"].create_call(sid)
    assert not set(orgs[0]["calls"]) & set(orgs[1]["calls"])

    async def drive_call(api: Api, sid: str, i: int) -> None:
        await api.post_status(sid, "in-progress", {"leg": i})
        await asyncio.gather(
            *(api.post_transcript(sid, transcript(f"{sid} line {n}")) for n in range(per_call))
        )
        await api.post_status(sid, "completed")

    async def drive(org: dict[str, Any]) -> None:
        api, cid, contacts = org["api"], org["campaign"], org["contacts"]
        await asyncio.gather(
            *(drive_call(api, sid, i) for i, sid in enumerate(org["calls"])),
            set_outcome(api, cid, contacts[1], "failed"),
            set_outcome(api, cid, contacts[2], "skipped"),
        )

    subscribers = [
        await connect_events(server, tenant_a.read),
        await connect_events(server, tenant_b.read),
    ]
    try:
        for ws in subscribers:
            for topic in TOPICS:
                await act(ws, topic, "*")
        await asyncio.gather(*(drive(org) for org in orgs))
        for org in orgs:
            await org["api"].post_transcript(org["marker"], transcript("marker"))
        received = [
            await read_until(ws, is_transcript(org["marker"], "marker"))
            for ws, org in zip(subscribers, orgs, strict=True)
        ]
    finally:
        for ws in subscribers:
            await ws.close()

    listed = []
    for org in orgs:
        resp = await org["api"].request("GET", "/v1/campaigns")
        assert resp.status == 200, resp.text
        listed.append({c["id"] for c in resp.body["campaigns"]})
    for org, msgs, own, foreign in zip(orgs, received, listed, listed[::-1], strict=True):
        msgs = msgs[:-1]  # the marker
        calls = [m for m in msgs if m["type"] in ("transcript", "call_status")]
        campaign = [m for m in msgs if m["type"] not in ("transcript", "call_status")]
        assert len(calls) + len(campaign) == len(msgs)

        assert {m["call_sid"] for m in calls} == set(org["calls"]), "foreign call leaked"
        assert all("campaign_id" not in m for m in calls)
        seen = {m["campaign_id"] for m in campaign}
        assert org["campaign"] in seen and seen <= own and not seen & foreign, "foreign campaign"
        # Campaign events carry no call SID, except contact_update, whose top-level
        # call_sid is what the published burki SDK reads (filters use routing metadata).
        assert all("call_sid" not in m for m in campaign if m["type"] != "contact_update")

        # Every event of each own call, exactly once: seq 2 (in-progress), the transcripts,
        # and the final status.
        for sid in org["calls"]:
            mine = [m for m in calls if m["call_sid"] == sid]
            assert sorted(m["seq"] for m in mine) == list(range(2, per_call + 4)), sid
            kinds = Counter(m["type"] for m in mine)
            assert kinds == {"transcript": per_call, "call_status": 2}, kinds
            assert [m["status"] for m in mine if m["type"] == "call_status"] == [
                "in-progress",
                "completed",
            ]
            texts = {m["data"]["content"] for m in mine if m["type"] == "transcript"}
            assert texts == {f"{sid} line {n}" for n in range(per_call)}

        campaign = [m for m in campaign if m["campaign_id"] == org["campaign"]]
        kinds = Counter(m["type"] for m in campaign)
        assert kinds["contact_completed"] == 3 and kinds["campaign_completed"] == 1, kinds
        assert set(kinds) <= {
            "progress",
            "contact_update",
            "contact_completed",
            "campaign_completed",
        }, kinds
        outcomes = {
            m["data"]["contact_id"]: m["data"]["outcome"]
            for m in campaign
            if m["type"] == "contact_completed"
        }
        assert outcomes == dict(zip(org["contacts"], ("success", "failed", "skipped"), strict=True))
        (done,) = [m for m in campaign if m["type"] == "campaign_completed"]
        assert done["data"]["completed_contacts"] == 3
        assert done["data"]["successful_contacts"] == 1


async def test_campaign_events_arrive_on_the_campaign_topic(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """Campaign events reach the campaign topic in the section 2 shapes (also filtered by
    assistant), and never a transcription subscriber."""
    other_assistant = await create_assistant(api_a, f"Collections {uuid.uuid4().hex[:6]}")
    first, first_contacts = await new_campaign(api_a, 2)
    second, (second_contact,) = await new_campaign(api_a, 1, assistant_id=other_assistant)
    sid = new_sid()
    await api_a.create_call(sid)

    every = await connect_events(server, tenant_a.read)
    by_assistant = await connect_events(server, tenant_a.read)
    transcripts = await connect_events(server, tenant_a.read)
    async with every, by_assistant, transcripts:
        await act(every, "campaign", "*")
        await act(by_assistant, "campaign", f"assistant:{other_assistant}")
        await act(transcripts, "transcription", "*")

        await set_outcome(api_a, first, first_contacts[0], "success")
        await set_outcome(api_a, first, first_contacts[1], "failed")
        await set_outcome(api_a, second, second_contact, "success")
        await api_a.post_transcript(sid, transcript("marker"))

        got = await read_until(
            every, lambda m: m["type"] == "campaign_completed" and m["campaign_id"] == second
        )
        completed = [m for m in got if m["type"] == "contact_completed"]
        assert [(m["campaign_id"], m["data"]["contact_id"]) for m in completed] == [
            (first, first_contacts[0]),
            (first, first_contacts[1]),
            (second, second_contact),
        ]
        assert [m["data"]["outcome"] for m in completed] == ["success", "failed", "success"]
        for msg in completed:
            assert_timestamp(msg["timestamp"])
            assert msg["data"]["phone_number"].startswith("+1415555"), msg
            assert {"contact_id", "phone_number", "name", "outcome", "duration", "call_sid"} <= set(
                msg["data"]
            ), msg
        finished = {m["campaign_id"]: m["data"] for m in got if m["type"] == "campaign_completed"}
        assert set(finished) == {first, second}
        assert finished[first]["total_contacts"] == 2
        assert finished[first]["successful_contacts"] == 1
        assert finished[first]["failed_contacts"] == 1
        assert finished[first]["success_rate"] == 50.0
        assert finished[second]["success_rate"] == 100.0
        for msg in got:
            assert msg["type"] in (
                "progress",
                "contact_update",
                "contact_completed",
                "campaign_completed",
            ), msg
            assert msg["campaign_id"] in (first, second), msg
            if msg["type"] == "progress":
                data = msg["data"]
                assert (
                    data["total_contacts"]
                    == data["completed_contacts"]
                    + data["pending_contacts"]
                    + data["in_progress_contacts"]
                ), msg
                assert msg["completed_contacts"] == data["completed_contacts"], msg

        got = await read_until(by_assistant, lambda m: m["type"] == "campaign_completed")
        assert {m["campaign_id"] for m in got} == {second}, got
        assert [m["data"]["contact_id"] for m in got if m["type"] == "contact_completed"] == [
            second_contact
        ]

        got = await read_until(transcripts, is_transcript(sid, "marker"))
        assert len(got) == 1, f"campaign events reached a transcription subscriber: {got}"


async def test_restricted_tokens_are_refused(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A token restricted to a call or a campaign, or a key without read, is refused with
    forbidden and 1008; an unrestricted token is accepted."""
    sid = new_sid()
    await api_a.create_call(sid)
    cid, _ = await new_campaign(api_a, 1)
    for restriction in ({"call_sid": sid}, {"campaign_id": cid}):
        token = await mint(api_a, **restriction)
        for method in ("header", "query"):
            msg, _ = await expect_refusal(server, "/v1/events", token, method=method)
            assert msg["error"] == "forbidden", (restriction, msg)
            assert_timestamp(msg["timestamp"])
    msg, _ = await expect_refusal(server, "/v1/events", tenant_a.write, method="header")
    assert msg["error"] == "forbidden", msg
    msg, _ = await expect_refusal(server, "/v1/events", "scl_" + "x" * 43, method="header")
    assert msg["error"] == "authentication_failed", msg

    async with await connect_events(server, await mint(api_a)) as ws:
        await act(ws, "call_status", sid)
        seq = await api_a.post_status(sid, "completed")
        msg = await recv_json(ws)
        assert (msg["type"], msg["call_sid"], msg["seq"], msg["status"]) == (
            "call_status",
            sid,
            seq,
            "completed",
        )
