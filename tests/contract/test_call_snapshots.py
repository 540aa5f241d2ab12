"""The reads behind a snapshot of many calls (``GET /v1/calls?include=latest``):
``list_calls`` over a set of statuses and ``EventLog.latest_of_type``, on every
backend."""

from __future__ import annotations

import asyncio

from scribeline.broker import open_broker
from scribeline.cluster import Signals, open_cluster
from scribeline.events import NewEvent
from scribeline.ingest.calls import CallService
from scribeline.ingest.campaigns import CampaignService
from scribeline.ingest.publish import Publisher
from scribeline.storage import Storage
from tests.contract.test_catalog import draft, status


def line(text: str, is_final: bool = True) -> NewEvent:
    return NewEvent("transcript", {"content": text, "is_final": is_final})


async def test_list_calls_filters_on_a_set_of_statuses(storage: Storage) -> None:
    """A set of statuses keeps the calls of any of them, newest first, page by page;
    one status given as a string still filters; an empty set keeps none; another
    organization's calls never appear."""
    org, other = await storage.create_org("acme"), await storage.create_org("other")
    assistant = await storage.get_assistant(org.id, None)
    other_assistant = await storage.get_assistant(other.id, None)
    assert assistant is not None and other_assistant is not None
    cycle = ["queued", "ringing", "in-progress", "completed"]
    for n in range(8):
        call, _ = await storage.create_call(draft(org.id, assistant.id, f"CA{n}"), status("queued"))
        if cycle[n % 4] != "queued":
            closes = cycle[n % 4] == "completed"
            await storage.append(call.stream, [status(cycle[n % 4], closes=closes)])
    await storage.create_call(draft(other.id, other_assistant.id, "CX"), status("ringing"))

    live = {"queued", "ringing", "in-progress"}
    sids: list[str] = []
    cursor = None
    for _ in range(10):
        page = await storage.list_calls(org.id, live, 2, cursor)
        assert all(c.status in live and c.org_id == org.id for c in page.calls)
        sids += [c.call_sid for c in page.calls]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sids == ["CA6", "CA5", "CA4", "CA2", "CA1", "CA0"]
    both = await storage.list_calls(org.id, ["ringing", "completed", "ringing"], 50, None)
    assert [c.call_sid for c in both.calls] == ["CA7", "CA5", "CA3", "CA1"]
    one = await storage.list_calls(org.id, "ringing", 50, None)
    assert [c.call_sid for c in one.calls] == ["CA5", "CA1"]
    assert (await storage.list_calls(org.id, set(), 50, None)).calls == []


async def test_latest_of_type_is_each_streams_newest_event_of_the_type_up_to_its_bound(
    storage: Storage,
) -> None:
    """Per stream, the newest event of the type with seq at or below the bound,
    whatever follows it; a stream with none, a bound of 0 and an unknown stream
    are absent. Events come with their data, timestamp and the stream's epoch."""
    await storage.append("a", [line("one"), status("ringing"), line("two", is_final=False)])
    await storage.append("a", [status("in-progress"), *(status("in-progress") for _ in range(50))])
    await storage.append("b", [status("queued")])
    await storage.append("c", [line("only")])
    heads = {s: p.seq for s, p in (await storage.heads(["a", "b", "c"])).items()}

    latest = await storage.latest_of_type({**heads, "none": 5}, "transcript")
    assert set(latest) == {"a", "c"}
    a = latest["a"]
    assert (a.stream, a.seq, a.type) == ("a", 3, "transcript")
    assert a.data == {"content": "two", "is_final": False}
    assert a.epoch == (await storage.head("a")).epoch and a.ts > 0
    assert latest["c"].data["content"] == "only"

    earlier = await storage.latest_of_type({"a": 2, "c": 0}, "transcript")
    assert {s: e.seq for s, e in earlier.items()} == {"a": 1}
    statuses = await storage.latest_of_type({"a": 3, "b": heads["b"]}, "call_status")
    assert {s: e.seq for s, e in statuses.items()} == {"a": 2, "b": 1}
    assert statuses["a"].data["status"] == "ringing"
    assert await storage.latest_of_type({}, "transcript") == {}


async def test_latest_of_type_answers_for_many_streams_at_once(storage: Storage) -> None:
    """More streams than one statement's worth (SQLite's parameter limit) each get
    their own newest event."""
    streams = [f"call:{n}" for n in range(600)]
    await asyncio.gather(
        *(storage.append(s, [line(f"{s} first"), line(f"{s} last")]) for s in streams)
    )
    latest = await storage.latest_of_type(dict.fromkeys(streams, 2), "transcript")
    assert {s: (e.seq, e.data["content"]) for s, e in latest.items()} == {
        s: (2, f"{s} last") for s in streams
    }


async def test_list_calls_at_heads_is_list_calls_with_each_streams_head(
    storage: Storage,
) -> None:
    """The same page as ``list_calls`` (filters, cursor), with the head seq of each
    listed call's stream."""
    org = await storage.create_org("acme")
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None
    for n in range(5):
        call, _ = await storage.create_call(draft(org.id, assistant.id, f"CA{n}"), status("queued"))
        await storage.append(call.stream, [line(str(i)) for i in range(n)])
    cursor = None
    for _ in range(5):
        page, heads = await storage.list_calls_at_heads(org.id, {"queued", "ringing"}, 2, cursor)
        assert page == await storage.list_calls(org.id, {"queued", "ringing"}, 2, cursor)
        assert heads == {c.stream: int(c.call_sid[2:]) + 1 for c in page.calls}
        cursor = page.next_cursor
        if cursor is None:
            break
    assert cursor is None
    empty, none = await storage.list_calls_at_heads(org.id, "completed", 10, None)
    assert (empty.calls, none) == ([], {})


async def test_list_calls_at_heads_reads_rows_and_heads_as_of_one_moment(
    storage: Storage,
) -> None:
    """While statuses change under it, every listed call's status is the one its
    stream had at the head listed with it (a status read a step before or after
    its head would break a snapshot that live events continue)."""
    org = await storage.create_org("acme")
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None
    calls = [
        (await storage.create_call(draft(org.id, assistant.id, f"CA{n}"), status("ringing")))[0]
        for n in range(10)
    ]
    done = asyncio.Event()

    async def flip() -> None:
        for n in range(60):
            await asyncio.gather(
                *(
                    storage.append(c.stream, [status(("in-progress", "ringing")[n % 2])])
                    for c in calls
                )
            )
        done.set()

    flipping = asyncio.create_task(flip())
    checked = 0
    while not done.is_set() or checked == 0:
        page, heads = await storage.list_calls_at_heads(org.id, None, 50, None)
        at_heads = await storage.latest_of_type(heads, "call_status")
        for call in page.calls:
            assert call.status == at_heads[call.stream].data["status"], (call, heads)
        checked += 1
        await asyncio.sleep(0)
    await flipping


async def test_a_call_snapshot_is_the_newest_line_up_to_the_head(storage: Storage) -> None:
    """``CallService.snapshots``: each call with its head and its newest line up to
    it (a partial after a final is the partial), None for a call with no
    transcript; the status at the head (ended_at with a terminal one)."""
    signals = Signals(open_cluster("memory://"))
    publisher = Publisher(open_broker("memory://"))
    campaigns = CampaignService(storage, publisher, 1.0, signals.cluster)
    calls = CallService(storage, publisher, campaigns, signals)
    org = await storage.create_org("acme")
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None
    first, _ = await storage.create_call(draft(org.id, assistant.id, "CA1"), status("ringing"))
    await storage.create_call(draft(org.id, assistant.id, "CA2"), status("queued"))
    await storage.append(first.stream, [line("final"), line("partial", is_final=False)])
    await storage.append(first.stream, [status("completed", closes=True)])

    (quiet, ended), cursor = await calls.snapshots(org.id, None, 10, None)
    assert cursor is None
    assert (ended.call.call_sid, ended.call.status, ended.last_seq) == ("CA1", "completed", 4)
    assert ended.call.ended_at is not None
    assert ended.latest is not None and ended.latest.seq == 3
    assert ended.latest.data["content"] == "partial"
    assert (quiet.call.call_sid, quiet.last_seq, quiet.latest) == ("CA2", 1, None)
    await campaigns.close()
    await signals.close()
