"""The REST snapshots the dashboard takes before it follows the event stream, against
a real server: ``GET /v1/calls`` with a list of statuses and ``include=latest``, and
``GET /v1/bots/{id}/events``."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection

from .bot_helpers import create_bot, open_url, participant, produce, ts
from .helpers import Api, ServerProcess, Tenant, assert_timestamp, new_sid, recv_json, transcript
from .test_event_stream import act, connect_events
from .test_rest import assert_error

LIVE = "queued,ringing,in-progress"


@pytest.fixture(scope="module")
def snap_tenant(server: ServerProcess) -> Tenant:
    """An organization of its own, so its call list is exactly what this module creates."""
    return server.create_tenant("snapshots")


@pytest.fixture
def api(http: aiohttp.ClientSession, server: ServerProcess, snap_tenant: Tenant) -> Api:
    return Api(http, server, snap_tenant.rw)


async def all_calls(api: Api, query: str) -> list[dict[str, Any]]:
    """Every call of ``GET /v1/calls?{query}``, following ``next_cursor``."""
    calls: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        suffix = "" if cursor is None else f"&cursor={cursor}"
        resp = await api.request("GET", f"/v1/calls?{query}{suffix}")
        assert resp.status == 200, resp.text
        calls += resp.body["calls"]
        cursor = resp.body["next_cursor"]
        if cursor is None:
            return calls
    raise AssertionError("pagination did not end")


# --------------------------------------------------------------------------- calls


async def test_status_takes_a_comma_list_of_statuses(api: Api, api_b: Api) -> None:
    """``status=a,b,c`` lists the calls of any of them, newest first and page by page
    (duplicates are fine); another organization's calls never appear."""
    created = {}
    for status in ("queued", "ringing", "in-progress", "in-progress"):
        call = await api.create_call(new_sid(f"CAsnap{status[:4]}"), status=status)
        created[call["call_sid"]] = status
    ended = await api.create_call()
    await api.post_status(ended["call_sid"], "completed")
    foreign = (await api_b.create_call(status="ringing"))["call_sid"]

    mine = {*created, ended["call_sid"]}  # other tests of the module add calls too

    live = await all_calls(api, f"status={LIVE}&limit=1")
    assert all(c["status"] in LIVE.split(",") for c in live)
    assert [c["call_sid"] for c in live if c["call_sid"] in mine] == list(created)[::-1]
    assert foreign not in {c["call_sid"] for c in live}
    twice = await all_calls(api, "status=ringing,completed,ringing")
    assert [(c["call_sid"], c["status"]) for c in twice if c["call_sid"] in mine] == [
        (ended["call_sid"], "completed"),
        *((sid, s) for sid, s in created.items() if s == "ringing"),
    ]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("status=queued,exploded", "exploded"),
        ("status=queued,", "''"),
        ("status=Queued", "Queued"),
        ("include=everything", "latest"),
        ("include=latest,everything", "latest"),
        ("include=", "latest"),
    ],
)
async def test_an_unknown_status_or_include_is_refused(api: Api, query: str, named: str) -> None:
    """Each status of the list must be one; ``include`` takes only ``latest``: anything
    else is 422 invalid_request, whose message names what is wrong or allowed."""
    resp = await api.request("GET", f"/v1/calls?{query}")
    assert_error(resp, 422, "invalid_request")
    assert named in resp.body["message"]


async def test_include_latest_adds_the_head_and_the_newest_line_of_each_call(
    api: Api, api_b: Api
) -> None:
    """``include=latest`` adds ``last_seq`` (the seq of the call's last event, a status
    or a line) and ``latest``: the newest transcript event as stored (a partial
    newer than the final is the partial), with ``seq`` and ``created_at``; null for a
    call with no transcript. Another organization's calls are never listed."""
    talking = (await api.create_call())["call_sid"]
    final = transcript("Hello there.", speaker="user", segment_id="s1")
    assert await api.post_transcript(talking, final) == 2
    partial = transcript("How can I", is_final=False, segment_id="s2", confidence=None)
    assert await api.post_transcript(talking, partial) == 3
    assert await api.post_status(talking, "in-progress", {"note": "held"}) == 4
    silent = (await api.create_call(status="ringing"))["call_sid"]
    ended = (await api.create_call())["call_sid"]
    await api.post_transcripts(ended, [transcript("Bye.", segment_id="a"), transcript("Bye!")])
    assert await api.post_status(ended, "completed") == 4
    foreign = (await api_b.create_call())["call_sid"]
    await api_b.post_transcript(foreign, transcript("not yours"))

    calls = {c["call_sid"]: c for c in await all_calls(api, "include=latest&limit=2")}
    assert foreign not in calls
    first = calls[talking]
    assert first["status"] == "in-progress" and first["last_seq"] == 4
    latest = dict(first["latest"])
    assert_timestamp(latest.pop("created_at"))
    assert latest == {**partial, "seq": 3}
    assert (calls[silent]["last_seq"], calls[silent]["latest"]) == (1, None)
    assert calls[ended]["status"] == "completed" and calls[ended]["last_seq"] == 4
    assert_timestamp(calls[ended]["ended_at"])
    stored = (await api.get_call(ended))["transcript"]
    assert calls[ended]["latest"] == stored[-1] and stored[-1]["content"] == "Bye!"
    # Without include (or with a status list) the calls are as they always were.
    plain = await all_calls(api, f"status={LIVE}")
    assert plain and all("last_seq" not in c and "latest" not in c for c in plain)
    live = {c["call_sid"]: c for c in await all_calls(api, f"status={LIVE}&include=latest")}
    assert ended not in live and live[talking] == first


# --------------------------------------------------------------------------- bots


async def run_meeting(bot: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's producer sends a few events and stops: what it sent."""
    producer = await open_url(bot["producer_url"])
    try:
        sent = [
            {"type": "start", "data": {}},
            {"type": "participant-tracked", "data": participant("p1", "Ana")},
            {"type": "ts", "data": ts("Hello <b>all</b>.", 0.5, 1.4, 0, "Ana")},
            {"type": "ts", "data": ts("Hi.", 1.5, 1.9, 1)},
            {
                "type": "chat-message",
                "data": {"username": "Ana", "content": "hi", "user_avatar": None},
            },
            {"type": "stop", "data": {"reason": "meeting_ended"}},
        ]
        for n, message in enumerate(sent, 1):
            assert await produce(producer, message["type"], message["data"]) == n
    finally:
        await producer.close()
    return sent


async def test_bot_events_are_the_stored_events_in_seq_order_page_by_page(
    api_a: Api, server: ServerProcess, tenant_a: Tenant
) -> None:
    """``GET /v1/bots/{id}/events`` returns the bot's events in seq order exactly as
    the event stream's ``meeting`` topic carried them; ``after`` and ``limit`` page
    through them, ``next_cursor`` going back in as ``after`` until it is null; a
    read-only key may read them."""
    bot = await create_bot(api_a)
    events_ws: ClientConnection = await connect_events(server, tenant_a.read)
    try:
        await act(events_ws, "meeting", bot["id"])
        sent = await run_meeting(bot)
        live = [await recv_json(events_ws) for _ in sent]
    finally:
        await events_ws.close()
    assert [m["bot_id"] for m in live] == [bot["id"]] * len(sent)

    reader = Api(api_a.session, api_a.server, tenant_a.read)
    whole = await reader.request("GET", f"/v1/bots/{bot['id']}/events")
    assert whole.status == 200, whole.text
    assert whole.body == {"events": live, "next_cursor": None}
    assert [e["seq"] for e in live] == list(range(1, len(sent) + 1))
    assert [{"type": e["type"], "data": e["data"]} for e in live] == sent

    pages, after = [], None
    for _ in range(10):
        query = "limit=4" if after is None else f"limit=4&after={after}"
        resp = await reader.request("GET", f"/v1/bots/{bot['id']}/events?{query}")
        assert resp.status == 200, resp.text
        pages.append([e["seq"] for e in resp.body["events"]])
        after = resp.body["next_cursor"]
        if after is None:
            break
        assert after == str(pages[-1][-1])
    assert pages == [[1, 2, 3, 4], [5, 6]]
    tail = await reader.request("GET", f"/v1/bots/{bot['id']}/events?after=6")
    assert tail.body == {"events": [], "next_cursor": None}


async def test_another_organizations_bot_events_are_not_found(
    api_a: Api, api_b: Api, tenant_a: Tenant
) -> None:
    """A bot of another organization answers exactly as a bot that does not exist
    (404 not_found); a write-only key may not read; bad paging parameters are 422."""
    bot = await create_bot(api_a)
    foreign = await api_b.request("GET", f"/v1/bots/{bot['id']}/events")
    missing = await api_b.request("GET", "/v1/bots/nosuchbot/events")
    assert_error(foreign, 404, "not_found")
    assert_error(missing, 404, "not_found")
    assert foreign.text == missing.text.replace("nosuchbot", bot["id"])
    writer = await api_a.request("GET", f"/v1/bots/{bot['id']}/events", key=tenant_a.write)
    assert_error(writer, 403)
    for query in ("limit=0", "limit=501", "after=-1", "after=x"):
        resp = await api_a.request("GET", f"/v1/bots/{bot['id']}/events?{query}")
        assert_error(resp, 422, "invalid_request")
    empty = await api_a.request("GET", f"/v1/bots/{bot['id']}/events?limit=500")
    assert empty.body == {"events": [], "next_cursor": None}
