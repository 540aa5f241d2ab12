"""Campaigns: REST lifecycle, linked calls and the progress stream (PROTOCOL section 2)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from .helpers import (
    RECV_TIMEOUT,
    Api,
    Response,
    ServerProcess,
    Tenant,
    assert_timestamp,
    collect_until_closed,
    expect_close,
    expect_refusal,
    new_sid,
    recv_json,
    running_server,
    send_json,
    transcript,
)

COUNTERS = (
    "total_contacts",
    "completed_contacts",
    "successful_contacts",
    "failed_contacts",
    "skipped_contacts",
    "pending_contacts",
    "in_progress_contacts",
    "success_rate",
    "completion_percentage",
)
#: The counters PROTOCOL section 2 shows mirrored at the top level of a progress event.
MIRRORED = (
    "total_contacts",
    "completed_contacts",
    "failed_contacts",
    "pending_contacts",
    "in_progress_contacts",
    "completion_percentage",
)
CAMPAIGN_KEYS = {"id", "name", "assistant_id", "status", "progress"}
FAST_INTERVAL = 0.2


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that coalesces campaign progress to one event per 0.2 s."""
    env = {"SCRIBELINE_CAMPAIGN_PROGRESS_INTERVAL": str(FAST_INTERVAL)}
    with running_server(tmp_path_factory.mktemp("campaigns-fast") / "data", env) as srv:
        yield srv


@pytest.fixture(scope="module")
def fast_tenant(fast_server: ServerProcess) -> Tenant:
    return fast_server.create_tenant("dialer")


@pytest.fixture
def fast_api(http: aiohttp.ClientSession, fast_server: ServerProcess, fast_tenant: Tenant) -> Api:
    return Api(http, fast_server, fast_tenant.rw)


# --------------------------------------------------------------------------- helpers


def assert_error(resp: Response, status: int, code: str) -> None:
    """The response is a JSON error with this HTTP status and error code."""
    assert resp.status == status, f"expected {status}, got {resp.status}: {resp.text[:300]}"
    assert isinstance(resp.body, dict), resp.text[:300]
    assert resp.body.get("error") == code, resp.body
    assert isinstance(resp.body.get("message"), str) and resp.body["message"], resp.body


def phone(i: int) -> str:
    return f"+1415555{i:04d}"


async def create_campaign(api: Api, name: str = "Spring renewals", **fields: Any) -> dict[str, Any]:
    resp = await api.request("POST", "/v1/campaigns", json_body={"name": name, **fields})
    assert resp.status == 201, f"create campaign: {resp.status} {resp.text}"
    assert isinstance(resp.body, dict)
    return resp.body


async def add_contacts(api: Api, campaign_id: int, body: Any) -> list[dict[str, Any]]:
    resp = await api.request("POST", f"/v1/campaigns/{campaign_id}/contacts", json_body=body)
    assert resp.status == 201, f"add contacts: {resp.status} {resp.text}"
    contacts = resp.body["contacts"]
    assert isinstance(contacts, list)
    return contacts


async def start(api: Api, campaign_id: int) -> dict[str, Any]:
    resp = await api.request("POST", f"/v1/campaigns/{campaign_id}/start")
    assert resp.status == 200, f"start: {resp.status} {resp.text}"
    assert resp.body["status"] == "running", resp.body
    return resp.body


async def running_campaign(
    api: Api, n: int, *, start_it: bool = True, **fields: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A campaign with ``n`` contacts, started unless told otherwise."""
    campaign = await create_campaign(api, **fields)
    contacts = await add_contacts(
        api, campaign["id"], [{"phone_number": phone(i), "name": f"Contact {i}"} for i in range(n)]
    )
    if start_it:
        await start(api, campaign["id"])
    return campaign, contacts


async def outcome(api: Api, campaign_id: int, contact_id: int, body: dict[str, Any]) -> Response:
    return await api.request(
        "POST", f"/v1/campaigns/{campaign_id}/contacts/{contact_id}/outcome", json_body=body
    )


async def set_outcome(
    api: Api, campaign_id: int, contact_id: int, result: str, **fields: Any
) -> dict[str, Any]:
    resp = await outcome(api, campaign_id, contact_id, {"outcome": result, **fields})
    assert resp.status == 200, f"outcome: {resp.status} {resp.text}"
    assert resp.body["status"] == result, resp.body
    return resp.body


async def get_campaign(api: Api, campaign_id: int) -> dict[str, Any]:
    resp = await api.request("GET", f"/v1/campaigns/{campaign_id}")
    assert resp.status == 200, f"get campaign: {resp.status} {resp.text}"
    return resp.body


async def contacts_of(api: Api, campaign_id: int) -> dict[int, dict[str, Any]]:
    resp = await api.request("GET", f"/v1/campaigns/{campaign_id}/contacts")
    assert resp.status == 200, f"list contacts: {resp.status} {resp.text}"
    return {c["id"]: c for c in resp.body["contacts"]}


async def connect_progress(
    server: ServerProcess, campaign_id: int | str, key: str, *, method: str = "query"
) -> ClientConnection:
    """Open the campaign progress stream without reading anything."""
    url = f"{server.ws_base}/ws/campaigns/{campaign_id}/progress"
    kwargs: dict[str, Any] = {}
    if method == "query":
        url += "?" + urlencode({"token": key})
    else:
        kwargs["additional_headers"] = {"Authorization": f"Bearer {key}"}
    return await connect(
        url, ping_interval=None, open_timeout=RECV_TIMEOUT, close_timeout=5, **kwargs
    )


async def open_progress(
    server: ServerProcess, campaign_id: int, key: str, *, method: str = "query"
) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect and read connection_established and the progress snapshot."""
    ws = await connect_progress(server, campaign_id, key, method=method)
    hello = await recv_json(ws)
    assert hello.get("type") == "connection_established", hello
    assert hello["campaign_id"] == campaign_id
    assert hello["message"] == "Connected to campaign progress stream"
    assert_timestamp(hello["timestamp"])
    snapshot = await recv_json(ws)
    assert snapshot.get("type") == "progress", f"a progress snapshot must follow: {snapshot}"
    check_progress(snapshot, campaign_id)
    return ws, snapshot


def check_progress(msg: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """A progress message whose counters add up; returns its counters."""
    assert msg["type"] == "progress", msg
    assert msg["campaign_id"] == campaign_id, msg
    assert_timestamp(msg["timestamp"])
    data = msg["data"]
    assert set(COUNTERS) <= set(data), f"missing counters: {set(COUNTERS) - set(data)}"
    for key in MIRRORED:
        assert key in msg, f"{key} is not mirrored at the top level: {msg}"
    for key, value in data.items():
        if key in msg:
            assert msg[key] == value, f"top-level {key}={msg[key]} but data has {value}"
    total, completed = data["total_contacts"], data["completed_contacts"]
    assert total == data["pending_contacts"] + data["in_progress_contacts"] + completed, data
    assert completed == (
        data["successful_contacts"] + data["failed_contacts"] + data["skipped_contacts"]
    ), data
    check_ratio(data["success_rate"], data["successful_contacts"], completed)
    check_ratio(data["completion_percentage"], completed, total)
    return data


def check_ratio(value: Any, part: int, whole: int) -> None:
    """``value`` is part / whole x 100 rounded to one decimal (0 when whole is 0)."""
    assert isinstance(value, int | float), value
    exact = part / whole * 100 if whole else 0.0
    assert abs(value - exact) <= 0.05 + 1e-9, f"{value} is not {part}/{whole} x 100"
    assert round(value, 1) == value, f"{value} has more than one decimal"


#: Contact statuses that the SDK-facing top level of contact_update spells differently.
SDK_STATUS = {"success": "completed"}


def check_contact_updates(msgs: list[dict[str, Any]]) -> None:
    """Every contact_update is consistent, an outcome's comes right before its
    contact_completed, and each progress names the latest contact_update before it."""
    latest: dict[str, Any] | None = None
    for msg, after in zip(msgs, [*msgs[1:], None], strict=True):
        if msg["type"] == "contact_update":
            data = msg["data"]
            assert msg["contact_id"] == data["contact_id"], msg
            assert msg["phone_number"] == data["phone_number"], msg
            assert msg["status"] == SDK_STATUS.get(data["status"], data["status"]), msg
            assert msg["call_sid"] == data["call_sid"], msg
            assert msg["error_message"] == data["error"], msg
            duration = data["duration"]
            assert msg["call_duration"] == (None if duration is None else int(duration + 0.5))
            if data["status"] in ("success", "failed", "skipped"):
                assert after is not None and after["type"] == "contact_completed", (msg, after)
                assert after["data"]["contact_id"] == data["contact_id"], (msg, after)
            latest = data
        elif msg["type"] == "progress":
            assert msg["data"].get("latest_contact") == latest, msg
            if latest is not None:
                assert msg["contact_id"] == latest["contact_id"], msg
                assert msg["contact_phone"] == latest["phone_number"], msg
                assert msg["contact_status"] == SDK_STATUS.get(latest["status"], latest["status"])
                assert msg["contact_error"] == latest["error"], msg


def parse_ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")


async def read_until(
    ws: ClientConnection, done: Any, within: float = RECV_TIMEOUT
) -> list[dict[str, Any]]:
    """Read messages up to and including the first one for which ``done`` is true."""
    msgs: list[dict[str, Any]] = []
    while True:
        msg = await recv_json(ws, within)
        msgs.append(msg)
        if done(msg):
            return msgs


# --------------------------------------------------------------------------- REST


async def test_rest_lifecycle_and_validation(api_a: Api, api_b: Api) -> None:
    """Create, add one contact and a list, start, and every documented 404/409/422 answer."""
    assistants = (await api_a.request("GET", "/v1/assistants")).body["assistants"]
    (default,) = [a for a in assistants if a["is_default"]]

    campaign = await create_campaign(api_a, "Q3 win-back")
    cid = campaign["id"]
    assert set(campaign) >= CAMPAIGN_KEYS, campaign
    assert campaign["name"] == "Q3 win-back"
    assert campaign["assistant_id"] == default["id"]
    assert campaign["status"] == "draft"
    assert campaign["progress"]["total_contacts"] == 0
    assert campaign["progress"]["completed_contacts"] == 0

    assert_error(await api_a.request("POST", "/v1/campaigns", json_body={}), 422, "invalid_request")
    assert_error(
        await api_a.request(
            "POST", "/v1/campaigns", json_body={"name": "x", "assistant_id": 10**9}
        ),
        422,
        "invalid_request",
    )
    assert_error(await api_a.request("POST", f"/v1/campaigns/{cid}/start"), 422, "invalid_request")

    (one,) = await add_contacts(api_a, cid, {"phone_number": "+14155550001", "name": "Ada"})
    assert one["phone_number"] == "+14155550001" and one["name"] == "Ada"
    assert one["status"] == "pending" and isinstance(one["id"], int)
    listed = await add_contacts(
        api_a,
        cid,
        [{"phone_number": "+14155550002"}, {"phone_number": "+14155550003", "name": "Bo"}],
    )
    assert [c["phone_number"] for c in listed] == ["+14155550002", "+14155550003"]
    assert [c["name"] for c in listed] == [None, "Bo"]
    assert all(c["status"] == "pending" for c in listed)
    ids = [one["id"], *(c["id"] for c in listed)]
    assert len(set(ids)) == 3
    assert_error(
        await api_a.request(
            "POST", f"/v1/campaigns/{cid}/contacts", json_body={"name": "no phone"}
        ),
        422,
        "invalid_request",
    )
    contacts = await contacts_of(api_a, cid)
    assert sorted(contacts) == sorted(ids)
    assert {c["status"] for c in contacts.values()} == {"pending"}

    # An outcome before the campaign runs is a conflict.
    assert_error(await outcome(api_a, cid, ids[0], {"outcome": "success"}), 409, "conflict")

    started = await start(api_a, cid)
    assert started["id"] == cid
    assert_timestamp(started["started_at"])
    assert started["progress"]["total_contacts"] == 3
    assert started["progress"]["pending_contacts"] == 3
    assert_error(await api_a.request("POST", f"/v1/campaigns/{cid}/start"), 409, "conflict")

    assert_error(await outcome(api_a, cid, 10**12, {"outcome": "success"}), 404, "not_found")
    assert_error(await outcome(api_a, cid, ids[0], {"outcome": "maybe"}), 422, "invalid_request")
    other, (other_contact,) = await running_campaign(api_a, 1)
    assert_error(
        await outcome(api_a, cid, other_contact["id"], {"outcome": "success"}), 404, "not_found"
    )

    done = await set_outcome(api_a, cid, ids[0], "success", duration=42.5)
    assert done["id"] == ids[0] and done["duration"] == 42.5
    assert_error(await outcome(api_a, cid, ids[0], {"outcome": "failed"}), 409, "conflict")
    await set_outcome(api_a, cid, ids[1], "failed", error="voicemail")
    await set_outcome(api_a, cid, ids[2], "skipped")

    fetched = await get_campaign(api_a, cid)
    assert fetched["status"] == "completed"
    assert_timestamp(fetched["completed_at"])
    assert fetched["progress"] == {
        "total_contacts": 3,
        "completed_contacts": 3,
        "successful_contacts": 1,
        "failed_contacts": 1,
        "skipped_contacts": 1,
        "pending_contacts": 0,
        "in_progress_contacts": 0,
        "success_rate": 33.3,
        "completion_percentage": 100.0,
    }
    contacts = await contacts_of(api_a, cid)
    assert [contacts[i]["status"] for i in ids] == ["success", "failed", "skipped"]
    assert contacts[ids[1]]["error"] == "voicemail"

    listed_a = (await api_a.request("GET", "/v1/campaigns")).body["campaigns"]
    assert {cid, other["id"]} <= {c["id"] for c in listed_a}
    # Each listed campaign carries its own progress (fetched for all at once).
    progress = {c["id"]: c["progress"] for c in listed_a}
    assert progress[cid] == fetched["progress"]
    assert progress[other["id"]]["total_contacts"] == 1
    listed_b = await api_b.request("GET", "/v1/campaigns")
    assert listed_b.status == 200
    assert cid not in {c["id"] for c in listed_b.body["campaigns"]}

    # Another organization's campaign is not found, whatever is asked of it.
    for method, path, body in (
        ("GET", f"/v1/campaigns/{cid}", None),
        ("GET", f"/v1/campaigns/{cid}/contacts", None),
        ("POST", f"/v1/campaigns/{other['id']}/contacts", {"phone_number": "+1"}),
        ("POST", f"/v1/campaigns/{other['id']}/start", None),
        (
            "POST",
            f"/v1/campaigns/{other['id']}/contacts/{other_contact['id']}/outcome",
            {"outcome": "success"},
        ),
    ):
        kwargs = {} if body is None else {"json_body": body}
        assert_error(await api_b.request(method, path, **kwargs), 404, "not_found")
    assert (await contacts_of(api_a, other["id"]))[other_contact["id"]]["status"] == "pending"
    assert_error(await api_a.request("GET", "/v1/campaigns/999999999"), 404, "not_found")
    assert_error(await api_a.request("GET", "/v1/campaigns/abc"), 404, "not_found")


# --------------------------------------------------------------------------- progress stream

# How each contact of the 50-contact campaign is driven, by index modulo 6.
CALL_KINDS = {0: "completed", 1: "failed", 2: "busy"}
OUTCOME_KINDS = {3: "success", 4: "failed", 5: "skipped"}


def expected_outcome(i: int) -> str:
    if i % 6 in CALL_KINDS:
        return "success" if CALL_KINDS[i % 6] == "completed" else "failed"
    return OUTCOME_KINDS[i % 6]


async def test_fifty_contacts_driven_concurrently(
    fast_server: ServerProcess, fast_tenant: Tenant, fast_api: Api
) -> None:
    """Under 50 concurrent contact changes every progress event is consistent and monotonic,
    each contact completes once, and campaign_completed carries the numbers that were driven."""
    api = fast_api
    campaign, contacts = await running_campaign(api, 50, name="Fifty")
    cid = campaign["id"]
    by_index = {i: c for i, c in enumerate(contacts)}
    sids = {i: new_sid() for i in by_index if i % 6 in CALL_KINDS}

    ws, snapshot = await open_progress(fast_server, cid, fast_tenant.read)
    async with ws:
        assert snapshot["data"]["total_contacts"] == 50
        assert snapshot["data"]["pending_contacts"] == 50
        assert snapshot["data"]["completed_contacts"] == 0

        # Phase 1: every call-driven contact gets its call, concurrently.
        calls = await asyncio.gather(
            *(
                api.create_call(
                    sid,
                    campaign_contact_id=by_index[i]["id"],
                    call_type="outbound",
                    customer_phone_number=phone(i),
                )
                for i, sid in sids.items()
            )
        )
        assert [c["call_sid"] for c in calls] == list(sids.values())
        msgs = await read_until(
            ws, lambda m: m["type"] == "progress" and m["data"]["in_progress_contacts"] == len(sids)
        )
        assert msgs[-1]["data"]["pending_contacts"] == 50 - len(sids)

        # Phase 2: calls end and outcomes are recorded, all at once, while the stream is read.
        async def drive(i: int) -> None:
            # Staggered over ~0.75 s so that several 0.2 s progress intervals pass; waits on
            # nothing.
            await asyncio.sleep(i * 0.015)
            contact_id = by_index[i]["id"]
            if i in sids:
                await api.post_transcript(sids[i], transcript(f"Hello contact {i}"))
                await api.post_status(sids[i], CALL_KINDS[i % 6])
            else:
                fields: dict[str, Any] = {"duration": float(i)}
                if OUTCOME_KINDS[i % 6] == "failed":
                    fields["error"] = "wrong number"
                await set_outcome(api, cid, contact_id, OUTCOME_KINDS[i % 6], **fields)

        reader = asyncio.create_task(collect_until_closed(ws))
        await asyncio.gather(*(drive(i) for i in by_index))
        rest, code = await reader
    msgs += rest
    assert code == 1000, f"the stream must close 1000 after campaign_completed, got {code}"

    assert {m["type"] for m in msgs} <= {
        "progress",
        "contact_update",
        "contact_completed",
        "campaign_completed",
    }
    assert [m["type"] for m in msgs].count("campaign_completed") == 1
    assert msgs[-1]["type"] == "campaign_completed", msgs[-1]
    check_contact_updates(msgs)

    # Progress: consistent, never going back, and agreeing with the contacts completed so far.
    last = snapshot["data"]
    seen_completed = 0
    live_progress = 0
    for msg in msgs:
        assert msg["campaign_id"] == cid, msg
        assert_timestamp(msg["timestamp"])
        if msg["type"] == "contact_completed":
            seen_completed += 1
        elif msg["type"] == "progress":
            live_progress += 1
            data = check_progress(msg, cid)
            assert data["total_contacts"] == 50
            assert data["completed_contacts"] >= last["completed_contacts"], (last, data)
            assert data["completed_contacts"] == seen_completed, (
                f"progress says {data['completed_contacts']} completed after "
                f"{seen_completed} contact_completed events"
            )
            last = data
    assert live_progress >= 3, f"expected several progress events, got {live_progress}"

    completed_msgs = [m for m in msgs if m["type"] == "contact_completed"]
    assert len(completed_msgs) == 50
    updates: dict[int, list[str]] = {}
    for msg in msgs:
        if msg["type"] == "contact_update":
            updates.setdefault(msg["contact_id"], []).append(msg["status"])
    for i, contact in by_index.items():
        final = SDK_STATUS.get(expected_outcome(i), expected_outcome(i))
        wanted = ["in_progress", final] if i in sids else [final]
        assert updates[contact["id"]] == wanted, (i, updates[contact["id"]])
    by_contact = {m["data"]["contact_id"]: m["data"] for m in completed_msgs}
    assert set(by_contact) == {c["id"] for c in contacts}, "one contact_completed per contact"
    for i, contact in by_index.items():
        data = by_contact[contact["id"]]
        assert data["outcome"] == expected_outcome(i), (i, data)
        assert data["phone_number"] == phone(i) and data["name"] == f"Contact {i}"
        if i in sids:
            assert data["call_sid"] == sids[i], (i, data)
            assert isinstance(data["duration"], int | float) and data["duration"] >= 0
        else:
            assert data["call_sid"] is None, (i, data)
            assert data["duration"] == float(i), (i, data)

    expected = {
        "total_contacts": 50,
        "completed_contacts": 50,
        "successful_contacts": sum(expected_outcome(i) == "success" for i in by_index),
        "failed_contacts": sum(expected_outcome(i) == "failed" for i in by_index),
        "skipped_contacts": sum(expected_outcome(i) == "skipped" for i in by_index),
    }
    assert expected["successful_contacts"] == 17 and expected["failed_contacts"] == 25
    final = msgs[-1]["data"]
    assert {k: final[k] for k in expected} == expected, final
    assert final["success_rate"] == 34.0
    stored = await contacts_of(api, cid)
    durations = sum(c["duration"] for c in stored.values())
    assert final["total_duration"] == pytest.approx(durations, abs=0.01)

    fetched = await get_campaign(api, cid)
    assert fetched["status"] == "completed"
    assert fetched["progress"] == {
        **expected,
        "pending_contacts": 0,
        "in_progress_contacts": 0,
        "success_rate": 34.0,
        "completion_percentage": 100.0,
    }
    for i, contact in by_index.items():
        assert stored[contact["id"]]["status"] == expected_outcome(i)
        assert stored[contact["id"]]["call_sid"] == sids.get(i)


async def test_progress_is_coalesced_to_one_per_second(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """With the default 1 s interval, progress events are at least ~0.9 s apart however many
    contacts change, and the changes of the last interval still get their progress event."""
    n = 25
    campaign, contacts = await running_campaign(api_a, n, name="Coalesced")
    cid = campaign["id"]
    ws, _ = await open_progress(server, cid, tenant_a.read)
    async with ws:
        began = time.monotonic()
        for contact in contacts[:-1]:
            await set_outcome(api_a, cid, contact["id"], "success")
            await asyncio.sleep(0.1)  # spreads the changes over ~2.5 s; waits on nothing
        changing = time.monotonic() - began
        # Nothing changes any more, yet the last changes must still be reported.
        msgs = await read_until(
            ws, lambda m: m["type"] == "progress" and m["data"]["completed_contacts"] == n - 1
        )
        await set_outcome(api_a, cid, contacts[-1]["id"], "success")
        rest, code = await collect_until_closed(ws)
    msgs += rest
    assert code == 1000
    assert [m["type"] for m in msgs].count("contact_completed") == n
    assert msgs[-1]["type"] == "campaign_completed"

    # The snapshot sent on connecting is not a coalesced change event; only the live ones count.
    progress = [m for m in msgs if m["type"] == "progress"]
    for msg in progress:
        check_progress(msg, cid)
    # The last change's progress is sent with the completion, whatever the interval,
    # and shows the final numbers; every earlier one keeps the interval.
    final, coalesced = progress[-1], progress[:-1]
    assert msgs[-2] is final, "the final progress comes right before campaign_completed"
    assert final["data"]["completed_contacts"] == final["data"]["total_contacts"] == n
    assert final["completion_percentage"] == 100.0
    stamps = [parse_ts(m["timestamp"]) for m in coalesced]
    gaps = [round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(stamps)]
    assert len(coalesced) >= 3, f"{len(coalesced)} progress events over {changing:.1f} s"
    assert all(gap >= 0.9 for gap in gaps), f"progress events closer than 0.9 s: {gaps}"
    assert len(coalesced) <= changing / 0.9 + 2, f"{len(coalesced)} events for {n - 1} changes"


def call_body(sid: str, contact_id: int) -> dict[str, Any]:
    return {
        "call_sid": sid,
        "to_phone_number": "+14155550100",
        "customer_phone_number": "+14155550199",
        "call_type": "outbound",
        "campaign_contact_id": contact_id,
    }


def is_contact_completed(msg: dict[str, Any]) -> bool:
    return msg["type"] == "contact_completed"


async def test_linked_call_completes_its_contact(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, api_b: Api
) -> None:
    """A linked call's end gives its contact success (completed) or failed (no-answer), and an
    outcome recorded before the call ends is not overwritten."""
    campaign, contacts = await running_campaign(api_a, 4, start_it=False, name="Linked")
    cid = campaign["id"]
    c1, c2, c3, c4 = (c["id"] for c in contacts)

    # Only a pending contact of a running campaign of the caller's organization can be called;
    # a refused call is not created.
    refused = new_sid()
    resp = await api_a.request("POST", "/v1/calls", json_body=call_body(refused, c1))
    assert_error(resp, 409, "conflict")  # the campaign is still a draft
    await start(api_a, cid)
    resp = await api_b.request("POST", "/v1/calls", json_body=call_body(refused, c1))
    assert_error(resp, 404, "not_found")  # another organization's contact
    resp = await api_a.request("POST", "/v1/calls", json_body=call_body(refused, 10**12))
    assert_error(resp, 404, "not_found")
    assert (await api_a.request("GET", f"/v1/calls/{refused}")).status == 404
    assert (await api_b.request("GET", f"/v1/calls/{refused}")).status == 404

    sid1, sid2, sid3 = new_sid(), new_sid(), new_sid()
    ws, _ = await open_progress(server, cid, tenant_a.read)
    async with ws:
        call = await api_a.create_call(sid1, campaign_contact_id=c1, call_type="outbound")
        assert call["call_sid"] == sid1
        taken = (await read_until(ws, lambda m: m["type"] == "contact_update"))[-1]
        assert (taken["contact_id"], taken["status"], taken["call_sid"]) == (
            c1,
            "in_progress",
            sid1,
        ), taken
        assert taken["call_duration"] is None and taken["data"]["status"] == "in_progress"
        stored = await contacts_of(api_a, cid)
        assert stored[c1]["status"] == "in_progress" and stored[c1]["call_sid"] == sid1
        resp = await api_a.request("POST", "/v1/calls", json_body=call_body(refused, c1))
        assert_error(resp, 409, "conflict")  # the contact is already being called
        assert (await api_a.request("GET", f"/v1/calls/{refused}")).status == 404

        await api_a.post_status(sid1, "completed")
        got = await read_until(ws, is_contact_completed)
        (ended,) = [m for m in got if m["type"] == "contact_update"]
        assert (ended["contact_id"], ended["status"], ended["call_sid"]) == (c1, "completed", sid1)
        assert isinstance(ended["call_duration"], int), ended
        done = got[-1]["data"]
        assert done["contact_id"] == c1 and done["outcome"] == "success", done
        assert done["call_sid"] == sid1 and done["phone_number"] == phone(0), done
        assert isinstance(done["duration"], int | float) and done["duration"] >= 0, done

        await api_a.create_call(sid2, campaign_contact_id=c2, call_type="outbound")
        await api_a.post_status(sid2, "no-answer")
        done = (await read_until(ws, is_contact_completed))[-1]["data"]
        assert done["contact_id"] == c2 and done["outcome"] == "failed", done
        assert done["call_sid"] == sid2, done

        await api_a.create_call(sid3, campaign_contact_id=c3, call_type="outbound")
        await set_outcome(api_a, cid, c3, "skipped", error="asked to be called later")
        done = (await read_until(ws, is_contact_completed))[-1]["data"]
        assert done["contact_id"] == c3 and done["outcome"] == "skipped", done
        assert done["call_sid"] == sid3, done
        await api_a.post_status(sid3, "completed")  # must not touch the contact again
        assert_error(await outcome(api_a, cid, c3, {"outcome": "success"}), 409, "conflict")

        await set_outcome(api_a, cid, c4, "success")
        rest, code = await collect_until_closed(ws)
    assert code == 1000
    assert [m["data"]["contact_id"] for m in rest if is_contact_completed(m)] == [c4], (
        "the end of call 3 completed its contact a second time"
    )
    final = rest[-1]
    assert final["type"] == "campaign_completed", final
    assert final["data"]["successful_contacts"] == 2
    assert final["data"]["failed_contacts"] == 1
    assert final["data"]["skipped_contacts"] == 1

    stored = await contacts_of(api_a, cid)
    assert [stored[c]["status"] for c in (c1, c2, c3, c4)] == [
        "success",
        "failed",
        "skipped",
        "success",
    ]
    assert [stored[c]["call_sid"] for c in (c1, c2, c3, c4)] == [sid1, sid2, sid3, None]
    assert stored[c3]["error"] == "asked to be called later"
    assert (await api_a.get_call(sid3))["status"] == "completed"
    assert (await api_a.get_call(sid2))["status"] == "no-answer"


async def mint(api: Api, **body: Any) -> str:
    resp = await api.request("POST", "/v1/tokens", json_body=body)
    assert resp.status == 201, f"mint: {resp.status} {resp.text}"
    token = resp.body["token"]
    assert isinstance(token, str)
    return token


async def test_campaign_restricted_token(server: ServerProcess, api_a: Api, api_b: Api) -> None:
    """A token for campaign A opens A's progress stream, not B's (forbidden, 1008), and cannot
    list campaigns (403)."""
    a, _ = await running_campaign(api_a, 2, name="A")
    b, _ = await running_campaign(api_a, 2, name="B")
    token = await mint(api_a, campaign_id=a["id"])

    for method in ("query", "header"):
        ws, snapshot = await open_progress(server, a["id"], token, method=method)
        async with ws:
            assert snapshot["data"]["total_contacts"] == 2
            await send_json(ws, {"type": "ping"})
            pong = await read_until(ws, lambda m: m["type"] != "progress")
            assert pong[-1]["type"] == "pong", pong

    msg, _ = await expect_refusal(server, f"/ws/campaigns/{b['id']}/progress", token)
    assert msg["error"] == "forbidden", msg
    assert_timestamp(msg["timestamp"])

    assert_error(await api_a.request("GET", "/v1/campaigns", key=token), 403, "forbidden")
    resp = await api_a.request("GET", f"/v1/campaigns/{a['id']}", key=token)
    assert resp.status == 200 and resp.body["id"] == a["id"], resp.text
    resp = await api_a.request("GET", f"/v1/campaigns/{b['id']}", key=token)
    assert_error(resp, 403, "forbidden")

    # Naming another organization's campaign in the token reaches nothing.
    foreign, _ = await running_campaign(api_b, 1, name="Foreign")
    sneaky = await mint(api_a, campaign_id=foreign["id"])
    msg, _ = await expect_refusal(server, f"/ws/campaigns/{foreign['id']}/progress", sneaky)
    assert msg["error"] == "not_found", msg


async def test_completed_campaign_and_ping(
    fast_server: ServerProcess, fast_tenant: Tenant, fast_api: Api
) -> None:
    """Ping gets pong; connecting after completion gives the snapshot, campaign_completed and
    close 1000."""
    campaign, (contact,) = await running_campaign(fast_api, 1, name="Single")
    cid = campaign["id"]
    ws, _ = await open_progress(fast_server, cid, fast_tenant.read)
    async with ws:
        await send_json(ws, {"type": "ping"})
        msgs = await read_until(ws, lambda m: m["type"] != "progress")
        assert set(msgs[-1]) == {"type", "timestamp"} and msgs[-1]["type"] == "pong", msgs
        assert_timestamp(msgs[-1]["timestamp"])
        await set_outcome(fast_api, cid, contact["id"], "success", duration=12.5)
        live, code = await collect_until_closed(ws)
    assert code == 1000
    check_contact_updates(live)
    live = [m for m in live if m["type"] != "progress"]
    assert [m["type"] for m in live] == [
        "contact_update",
        "contact_completed",
        "campaign_completed",
    ], live
    assert live[0]["status"] == "completed" and live[0]["call_duration"] == 13, live[0]
    summary = live[-1]["data"]
    assert summary["total_contacts"] == 1 and summary["completed_contacts"] == 1
    assert summary["successful_contacts"] == 1 and summary["failed_contacts"] == 0
    assert summary["success_rate"] == 100.0
    assert summary["total_duration"] == pytest.approx(12.5)
    # Mirrored at the top level for the Burki SDK, total_duration in whole seconds.
    top = {k: live[-1][k] for k in ("total_contacts", "completed_contacts", "failed_contacts")}
    assert top == {"total_contacts": 1, "completed_contacts": 1, "failed_contacts": 0}
    assert live[-1]["success_rate"] == 100.0 and live[-1]["total_duration"] == 13

    for _ in range(2):  # the answer does not change for later visitors
        ws, snapshot = await open_progress(fast_server, cid, fast_tenant.read)
        async with ws:
            assert snapshot["data"]["completed_contacts"] == 1
            assert snapshot["data"]["pending_contacts"] == 0
            assert snapshot["data"]["completion_percentage"] == 100.0
            assert snapshot["data"]["success_rate"] == 100.0
            # The snapshot names the latest contact change too.
            assert snapshot["data"]["latest_contact"] == live[0]["data"]
            assert (snapshot["contact_id"], snapshot["contact_status"]) == (
                contact["id"],
                "completed",
            )
            completed = await recv_json(ws)
            assert completed["type"] == "campaign_completed", completed
            assert completed["campaign_id"] == cid
            assert completed["data"] == summary
            assert completed["total_duration"] == 13
            assert await expect_close(ws) == 1000


async def test_progress_stream_refusals(
    server: ServerProcess, tenant_a: Tenant, tenant_b: Tenant, api_a: Api
) -> None:
    """A missing campaign and another organization's campaign both get not_found and 1008."""
    campaign, _ = await running_campaign(api_a, 1, name="Private")
    foreign, _ = await expect_refusal(
        server, f"/ws/campaigns/{campaign['id']}/progress", tenant_b.rw
    )
    missing, _ = await expect_refusal(server, "/ws/campaigns/999999999/progress", tenant_b.rw)
    for msg in (foreign, missing):
        assert msg["error"] == "not_found", msg
        assert_timestamp(msg["timestamp"])
    bogus, _ = await expect_refusal(server, "/ws/campaigns/abc/progress", tenant_a.read)
    assert bogus["error"] == "not_found", bogus
    nobody, _ = await expect_refusal(server, f"/ws/campaigns/{campaign['id']}/progress", None)
    assert nobody["error"] == "authentication_failed", nobody


async def test_contacts_are_listed_in_bounded_pages(api_a: Api) -> None:
    """A campaign's contacts come in pages of at most ``limit`` (1,000 at most),
    in id order, continued by ``next_cursor`` until it is null."""
    campaign = await create_campaign(api_a)
    added = await add_contacts(
        api_a, campaign["id"], [{"phone_number": phone(i)} for i in range(5)]
    )
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        resp = await api_a.request(
            "GET", f"/v1/campaigns/{campaign['id']}/contacts?limit=2{cursor}"
        )
        assert resp.status == 200, resp.text
        assert len(resp.body["contacts"]) <= 2
        seen += [c["id"] for c in resp.body["contacts"]]
        pages += 1
        if resp.body["next_cursor"] is None:
            break
        cursor = f"&cursor={resp.body['next_cursor']}"
    assert seen == [c["id"] for c in added] and pages == 3
    for query in ("limit=0", "limit=1001", "limit=²", "cursor=-1"):
        resp = await api_a.request("GET", f"/v1/campaigns/{campaign['id']}/contacts?{query}")
        assert_error(resp, 422, "invalid_request")
