"""REST ingest and read API (PROTOCOL section 6 and the server contract)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from .helpers import (
    Api,
    Response,
    ServerProcess,
    Tenant,
    assert_timestamp,
    new_sid,
    open_live,
    read_until_seq,
    transcript,
)

CALL_KEYS = {
    "call_sid",
    "status",
    "assistant_id",
    "started_at",
    "to_phone_number",
    "customer_phone_number",
    "call_type",
}


def assert_error(resp: Response, status: int, code: str | None = None) -> None:
    """The response is a JSON error with the given HTTP status and error code."""
    assert resp.status == status, f"expected {status}, got {resp.status}: {resp.text[:300]}"
    assert isinstance(resp.body, dict), f"error body is not a JSON object: {resp.text[:300]}"
    assert isinstance(resp.body.get("error"), str), resp.body
    assert isinstance(resp.body.get("message"), str), resp.body
    if code is not None:
        assert resp.body["error"] == code, resp.body


async def transcript_of(api: Api, sid: str) -> list[dict[str, Any]]:
    transcript_ = (await api.get_call(sid))["transcript"]
    assert isinstance(transcript_, list)
    return transcript_


# --------------------------------------------------------------------------- calls


async def test_create_call_returns_the_call(api_a: Api) -> None:
    """POST /v1/calls answers 201 with the call, defaulting to in-progress and the default
    assistant."""
    sid = new_sid()
    call = await api_a.create_call(
        sid, to_phone_number="+14155550100", customer_phone_number="+14155550199"
    )
    assert set(call) >= CALL_KEYS, call
    assert call["call_sid"] == sid
    assert call["status"] == "in-progress"
    assert call["assistant_id"] is not None
    assert call["to_phone_number"] == "+14155550100"
    assert call["customer_phone_number"] == "+14155550199"
    assert call["call_type"] == "inbound"
    assert_timestamp(call["started_at"])

    fetched = await api_a.get_call(sid)
    assert {k: fetched[k] for k in CALL_KEYS} == {k: call[k] for k in CALL_KEYS}
    assert fetched["transcript"] == []


async def test_create_call_with_an_initial_status(api_a: Api) -> None:
    """An explicit initial status is stored and reported."""
    call = await api_a.create_call(status="ringing")
    assert call["status"] == "ringing"
    assert (await api_a.get_call(call["call_sid"]))["status"] == "ringing"


async def test_duplicate_call_sid_in_the_same_org_conflicts(api_a: Api) -> None:
    """Creating a call twice with one SID in one organization answers 409 conflict."""
    sid = new_sid()
    await api_a.create_call(sid)
    resp = await api_a.request("POST", "/v1/calls", json_body={"call_sid": sid})
    assert_error(resp, 409, "conflict")


async def test_another_orgs_call_sid_is_not_revealed_by_create(api_a: Api, api_b: Api) -> None:
    """Creating a call whose SID another organization uses does not reveal it (no 409), and both
    stay separate."""
    sid = new_sid()
    await api_a.create_call(sid, to_phone_number="+10000000001")
    resp = await api_b.request(
        "POST", "/v1/calls", json_body={"call_sid": sid, "to_phone_number": "+10000000002"}
    )
    assert resp.status == 201, f"a 409 here would let org B probe org A's SIDs: {resp.text}"
    await api_b.post_transcript(sid, transcript("org b only"))
    assert await transcript_of(api_a, sid) == []
    assert (await api_a.get_call(sid))["to_phone_number"] == "+10000000001"
    assert [t["content"] for t in await transcript_of(api_b, sid)] == ["org b only"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"call_sid": "bad sid"}, id="space-in-sid"),
        pytest.param({"call_sid": "A" * 65}, id="sid-too-long"),
        pytest.param({"call_sid": ""}, id="empty-sid"),
        pytest.param({"to_phone_number": "+1"}, id="no-sid"),
        pytest.param({"call_sid": 12345}, id="sid-not-a-string"),
    ],
)
async def test_create_call_validation(api_a: Api, body: dict[str, Any]) -> None:
    """An invalid call body answers 422 invalid_request."""
    resp = await api_a.request("POST", "/v1/calls", json_body=body)
    assert_error(resp, 422, "invalid_request")


async def test_create_call_with_a_bad_status_writes_nothing(api_a: Api) -> None:
    """A call with an unknown status is refused with 422 and not created."""
    sid = new_sid()
    resp = await api_a.request("POST", "/v1/calls", json_body={"call_sid": sid, "status": "x"})
    assert_error(resp, 422, "invalid_request")
    assert_error(await api_a.request("GET", f"/v1/calls/{sid}"), 404, "not_found")


async def test_create_call_with_another_orgs_assistant_is_refused(api_a: Api, api_b: Api) -> None:
    """A call cannot be attached to an assistant of another organization."""
    assistant_id = (await api_a.create_call())["assistant_id"]
    sid = new_sid()
    resp = await api_b.request(
        "POST", "/v1/calls", json_body={"call_sid": sid, "assistant_id": assistant_id}
    )
    assert 400 <= resp.status < 500 and resp.status != 409, resp.text
    assert_error(resp, resp.status)
    assert_error(await api_a.request("GET", f"/v1/calls/{sid}"), 404, "not_found")


# --------------------------------------------------------------------------- transcripts


async def test_post_transcript_and_read_back_the_final_transcript(api_a: Api) -> None:
    """Transcripts get consecutive seqs; GET returns the final segments in order with their seq."""
    sid = new_sid()
    await api_a.create_call(sid)
    final_1 = transcript("Hello.", segment_id="seg_1", speaker="assistant")
    partial = transcript("How c", segment_id="seg_2", is_final=False, speaker="user")
    final_2 = transcript("How can I?", segment_id="seg_2", speaker="user", confidence=None)
    assert await api_a.post_transcript(sid, final_1) == 2
    assert await api_a.post_transcript(sid, partial) == 3
    assert await api_a.post_transcript(sid, final_2) == 4
    unfinished = transcript("And th", segment_id="seg_3", is_final=False)
    assert await api_a.post_transcript(sid, unfinished) == 5

    segments = await transcript_of(api_a, sid)
    assert [s["seq"] for s in segments] == [2, 4]
    for segment, body in zip(segments, [final_1, final_2], strict=True):
        for name, value in body.items():
            assert segment[name] == value, (name, segment)
        assert_timestamp(segment["created_at"])


async def test_post_a_batch_of_transcripts(api_a: Api) -> None:
    """A JSON array is stored as consecutive events and answered with all seqs."""
    sid = new_sid()
    await api_a.create_call(sid)
    seqs = await api_a.post_transcripts(sid, [transcript(f"b{i}") for i in range(4)])
    assert seqs == [2, 3, 4, 5]
    assert [s["content"] for s in await transcript_of(api_a, sid)] == ["b0", "b1", "b2", "b3"]


INVALID_TRANSCRIPTS = [
    pytest.param(transcript(speaker="robot"), id="bad-speaker"),
    pytest.param(transcript(confidence=1.5), id="confidence-over-1"),
    pytest.param(transcript(confidence=-0.1), id="confidence-below-0"),
    pytest.param(transcript(is_final="maybe"), id="is-final-not-bool"),
    pytest.param({"speaker": "user", "is_final": True}, id="no-content"),
    pytest.param([transcript("fine"), transcript(speaker="robot")], id="batch-with-bad-item"),
    pytest.param([transcript("fine"), "nope"], id="batch-with-non-object"),
]


@pytest.mark.parametrize("body", INVALID_TRANSCRIPTS)
async def test_invalid_transcript_answers_422_and_writes_nothing(api_a: Api, body: Any) -> None:
    """An invalid transcript (or one bad item in a batch) answers 422 and stores nothing at all."""
    sid = new_sid()
    await api_a.create_call(sid)
    resp = await api_a.request("POST", f"/v1/calls/{sid}/transcripts", json_body=body)
    assert_error(resp, 422, "invalid_request")
    assert await transcript_of(api_a, sid) == []
    assert await api_a.post_transcript(sid, transcript("next")) == 2, "a seq was consumed"


@pytest.mark.parametrize("raw", ["{not json", "", '"just a string"', "42"])
async def test_unparseable_transcript_body_answers_4xx(api_a: Api, raw: str) -> None:
    """A body that is not a transcript object or array gets a 4xx JSON error and stores nothing."""
    sid = new_sid()
    await api_a.create_call(sid)
    resp = await api_a.request(
        "POST",
        f"/v1/calls/{sid}/transcripts",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status in (400, 422), resp.text
    assert_error(resp, resp.status)
    assert await transcript_of(api_a, sid) == []


async def test_body_too_large_answers_413_and_writes_nothing(api_a: Api) -> None:
    """A request body far past any sane limit answers 413 and stores nothing."""
    sid = new_sid()
    await api_a.create_call(sid)
    batch = [transcript("y" * 8000) for _ in range(2000)]  # about 16 MB
    resp = await api_a.request("POST", f"/v1/calls/{sid}/transcripts", json_body=batch)
    assert_error(resp, 413)
    assert await transcript_of(api_a, sid) == []


# --------------------------------------------------------------------------- status


async def test_post_status_updates_the_call(api_a: Api) -> None:
    """POST status answers 201 with the next seq and the call reports the new status."""
    sid = new_sid()
    await api_a.create_call(sid, status="ringing")
    assert await api_a.post_status(sid, "in-progress", {"answered_by": "human"}) == 2
    assert (await api_a.get_call(sid))["status"] == "in-progress"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "exploded"}, id="unknown-status"),
        pytest.param({"metadata": {}}, id="no-status"),
        pytest.param({"status": "completed", "metadata": "nope"}, id="metadata-not-object"),
    ],
)
async def test_invalid_status_answers_422_and_writes_nothing(
    api_a: Api, body: dict[str, Any]
) -> None:
    """An invalid status body answers 422 and leaves the call unchanged."""
    sid = new_sid()
    await api_a.create_call(sid)
    resp = await api_a.request("POST", f"/v1/calls/{sid}/status", json_body=body)
    assert_error(resp, 422, "invalid_request")
    assert (await api_a.get_call(sid))["status"] == "in-progress"
    assert await api_a.post_transcript(sid, transcript("next")) == 2, "a seq was consumed"


async def test_appending_after_a_terminal_status_answers_409_call_ended(api_a: Api) -> None:
    """After a terminal status, transcripts, batches and statuses answer 409 call_ended."""
    sid = new_sid()
    await api_a.create_call(sid)
    await api_a.post_transcript(sid, transcript("before"))
    await api_a.post_status(sid, "failed")
    single = await api_a.request(
        "POST", f"/v1/calls/{sid}/transcripts", json_body=transcript("after")
    )
    assert_error(single, 409, "call_ended")
    batch = await api_a.request(
        "POST", f"/v1/calls/{sid}/transcripts", json_body=[transcript("after")]
    )
    assert_error(batch, 409, "call_ended")
    status = await api_a.request(
        "POST", f"/v1/calls/{sid}/status", json_body={"status": "in-progress", "metadata": {}}
    )
    assert_error(status, 409, "call_ended")
    call = await api_a.get_call(sid)
    assert call["status"] == "failed"
    assert [t["content"] for t in call["transcript"]] == ["before"]


# --------------------------------------------------------------------------- auth


def _endpoints(sid: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/v1/calls", None),
        ("GET", f"/v1/calls/{sid}", None),
        ("POST", "/v1/calls", {"call_sid": new_sid()}),
        ("POST", f"/v1/calls/{sid}/transcripts", transcript("x")),
        ("POST", f"/v1/calls/{sid}/status", {"status": "completed", "metadata": {}}),
    ]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer scl_unknownkeyunknownkeyunknownkey", "Bearer ", "Basic dXNlcjpwYXNz", "scl_x"],
)
async def test_every_endpoint_requires_a_valid_key(api_a: Api, authorization: str | None) -> None:
    """A missing, unknown or malformed Authorization header gets 401 authentication_failed
    everywhere."""
    sid = new_sid()
    await api_a.create_call(sid)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in _endpoints(sid):
        kwargs: dict[str, Any] = {} if body is None else {"json_body": body}
        resp = await api_a.request(method, path, key=None, headers=headers, **kwargs)
        assert_error(resp, 401, "authentication_failed")
    call = await api_a.get_call(sid)
    assert call["status"] == "in-progress" and call["transcript"] == []


async def test_writes_need_the_write_scope(api_a: Api, tenant_a: Tenant) -> None:
    """A read-only key gets 403 forbidden on every write and nothing is written."""
    sid = new_sid()
    await api_a.create_call(sid)
    new_call = new_sid()
    writes = [
        ("POST", "/v1/calls", {"call_sid": new_call}),
        ("POST", f"/v1/calls/{sid}/transcripts", transcript("x")),
        ("POST", f"/v1/calls/{sid}/transcripts", [transcript("x")]),
        ("POST", f"/v1/calls/{sid}/status", {"status": "completed", "metadata": {}}),
    ]
    for method, path, body in writes:
        resp = await api_a.request(method, path, json_body=body, key=tenant_a.read)
        assert_error(resp, 403, "forbidden")
    call = await api_a.get_call(sid)
    assert call["status"] == "in-progress" and call["transcript"] == []
    assert_error(await api_a.request("GET", f"/v1/calls/{new_call}"), 404, "not_found")
    # The same key can read.
    assert (await api_a.request("GET", f"/v1/calls/{sid}", key=tenant_a.read)).status == 200


# --------------------------------------------------------------------------- isolation


async def test_missing_and_foreign_calls_answer_the_same_404(api_a: Api, api_b: Api) -> None:
    """Every per-call endpoint answers another org's call exactly like a missing one, and writes
    nothing."""
    foreign = new_sid()
    await api_a.create_call(foreign)
    missing = new_sid()
    for method, suffix, body in [
        ("GET", "", None),
        ("POST", "/transcripts", transcript("intruder")),
        ("POST", "/transcripts", [transcript("intruder")]),
        ("POST", "/status", {"status": "completed", "metadata": {}}),
    ]:
        kwargs: dict[str, Any] = {} if body is None else {"json_body": body}
        r_foreign = await api_b.request(method, f"/v1/calls/{foreign}{suffix}", **kwargs)
        r_missing = await api_b.request(method, f"/v1/calls/{missing}{suffix}", **kwargs)
        assert_error(r_foreign, 404, "not_found")
        assert_error(r_missing, 404, "not_found")
        assert r_foreign.text == r_missing.text.replace(missing, foreign), (method, suffix)
    call = await api_a.get_call(foreign)
    assert call["status"] == "in-progress" and call["transcript"] == []


async def test_list_calls_shows_only_the_own_organization(api_a: Api, api_b: Api) -> None:
    """GET /v1/calls never lists another organization's calls, with or without a filter."""
    sid_a = (await api_a.create_call())["call_sid"]
    sid_b = (await api_b.create_call())["call_sid"]
    for query in ("", "?status=in-progress", "?limit=100"):
        listed_b = await _all_calls(api_b, query)
        assert sid_a not in listed_b and sid_b in listed_b, query
        listed_a = await _all_calls(api_a, query)
        assert sid_b not in listed_a and sid_a in listed_a, query


async def _all_calls(api: Api, query: str) -> list[str]:
    sids: list[str] = []
    path = "/v1/calls" + query
    for _ in range(1000):
        resp = await api.request("GET", path)
        assert resp.status == 200, resp.text
        sids += [c["call_sid"] for c in resp.body["calls"]]
        cursor = resp.body["next_cursor"]
        if cursor is None:
            return sids
        sep = "&" if "?" in query else "?"
        path = f"/v1/calls{query}{sep}cursor={cursor}"
    raise AssertionError("pagination did not end")


# --------------------------------------------------------------------------- listing


@pytest.fixture(scope="module")
def pages_tenant(server: ServerProcess) -> Tenant:
    """An organization of its own, so its call list is exactly what this module creates."""
    return server.create_tenant("pages")


async def test_list_calls_paginates_newest_first(
    http: aiohttp.ClientSession, server: ServerProcess, pages_tenant: Tenant
) -> None:
    """GET /v1/calls pages through every call newest first with next_cursor and filters by
    status."""
    api = Api(http, server, pages_tenant.rw)
    created = [(await api.create_call(new_sid(f"CApage{i:02d}")))["call_sid"] for i in range(7)]
    await api.post_status(created[2], "completed")
    await api.post_status(created[5], "canceled")

    pages: list[list[dict[str, Any]]] = []
    resp = await api.request("GET", "/v1/calls?limit=3")
    while True:
        assert resp.status == 200, resp.text
        assert set(resp.body) >= {"calls", "next_cursor"}
        pages.append(resp.body["calls"])
        cursor = resp.body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
        resp = await api.request("GET", f"/v1/calls?limit=3&cursor={cursor}")
        assert len(pages) < 10, "pagination does not end"
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [c["call_sid"] for page in pages for c in page]
    assert listed == created[::-1]
    for call in (c for page in pages for c in page):
        assert {"call_sid", "status", "assistant_id", "started_at"} <= set(call)
        assert_timestamp(call["started_at"])

    in_progress = await _all_calls(api, "?status=in-progress&limit=2")
    assert in_progress == [s for s in created[::-1] if s not in (created[2], created[5])]
    completed = await api.request("GET", "/v1/calls?status=completed")
    assert [c["call_sid"] for c in completed.body["calls"]] == [created[2]]


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "limit=-1", "status=exploded"])
async def test_list_calls_rejects_bad_parameters(api_a: Api, query: str) -> None:
    """Invalid list parameters answer 422 invalid_request."""
    assert_error(await api_a.request("GET", f"/v1/calls?{query}"), 422, "invalid_request")


async def test_list_calls_rejects_a_forged_cursor(api_a: Api) -> None:
    """A cursor the server did not issue gets a 4xx JSON error, not a 500."""
    resp = await api_a.request("GET", "/v1/calls?cursor=not-a-real-cursor%21%21")
    assert 400 <= resp.status < 500, resp.text
    assert_error(resp, resp.status)


async def test_concurrent_creates_of_one_sid_make_one_call(api_a: Api) -> None:
    """Racing creates of one SID produce exactly one 201 and the rest 409."""
    sid = new_sid()
    results = await asyncio.gather(
        *(api_a.request("POST", "/v1/calls", json_body={"call_sid": sid}) for _ in range(8))
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [201] + [409] * 7, statuses


async def test_text_round_trips_exactly(
    api_a: Api, server: ServerProcess, tenant_a: Tenant
) -> None:
    """Non-ASCII, escapes and astral-plane characters come back unchanged by REST and stream."""
    sid = new_sid()
    await api_a.create_call(sid)
    content = 'Grüße, 你好 😀 — "quoted" \\ back\\slash\ttab\nnewline \u2028 </script>'
    seq = await api_a.post_transcript(sid, transcript(content, segment_id="seg-ü"))
    assert (await transcript_of(api_a, sid))[0]["content"] == content
    ws, _ = await open_live(server, sid, tenant_a.read, since=seq - 1)
    async with ws:
        event = (await read_until_seq(ws, seq))[-1]
    assert event["data"]["content"] == content
    assert event["data"]["segment_id"] == "seg-ü"


async def test_concurrent_terminal_statuses_end_the_call_once(api_a: Api) -> None:
    """Of several terminal statuses posted at once exactly one is stored; the rest get 409."""
    sid = new_sid()
    await api_a.create_call(sid)
    results = await asyncio.gather(
        *(
            api_a.request(
                "POST", f"/v1/calls/{sid}/status", json_body={"status": status, "metadata": {}}
            )
            for status in ["completed", "failed", "busy", "no-answer", "canceled"] * 2
        )
    )
    assert sorted(r.status for r in results) == [201] + [409] * 9
    winner = next(r for r in results if r.status == 201)
    assert winner.body["seq"] == 2
    for r in results:
        if r.status == 409:
            assert r.body["error"] == "call_ended"


async def test_unknown_routes_and_methods_get_json_errors(api_a: Api) -> None:
    """All errors are JSON, including an unknown route (404) and a wrong method (405)."""
    assert_error(await api_a.request("GET", "/v1/nothing-here"), 404, "not_found")
    resp = await api_a.request("DELETE", "/v1/calls")
    assert_error(resp, 405)
