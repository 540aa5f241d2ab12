"""The client SDK against a real server: every REST method with its typed errors, the
streams (live transcript, campaign progress, organization events, meeting bots),
refusals that are not retried, and the blocking Client."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scribeline.client import (
    AsyncClient,
    AuthenticationError,
    Backoff,
    BotEvent,
    CampaignCompleted,
    CampaignProgress,
    Client,
    ConflictError,
    ConnectionFailedError,
    ContactCompleted,
    InvalidRequestError,
    KeepAlive,
    NotFoundError,
    PermissionDeniedError,
    ReconnectFailed,
    StatusEvent,
    Stream,
    StreamRefused,
    TranscriptEvent,
)

from .bot_helpers import MEETING_URL, open_url, produce, ts
from .helpers import RECV_TIMEOUT, ServerProcess, Tenant, new_sid, recv_json

#: A refusal must not be retried: with this backoff a retry would take at least 2.5 s.
SLOW_BACKOFF = Backoff(initial=5.0, maximum=5.0)
QUICK = 2.5


@pytest.fixture
async def client(server: ServerProcess, tenant_a: Tenant) -> AsyncIterator[AsyncClient]:
    """Tenant A's read-write client."""
    async with AsyncClient(server.base_url, api_key=tenant_a.rw, backoff=SLOW_BACKOFF) as c:
        yield c


def said(content: str, **fields: Any) -> dict[str, Any]:
    return {"content": content, "speaker": "user", **fields}


async def collect(stream: Stream[Any], within: float = RECV_TIMEOUT) -> list[Any]:
    """Every event until the stream ends."""

    async def run() -> list[Any]:
        async with stream:
            return [event async for event in stream]

    return await asyncio.wait_for(run(), within)


def on_message(stream: Stream[Any], kind: str, count: int = 1) -> asyncio.Event:
    """Test seam: an event set once the stream has received ``count`` messages of type
    ``kind`` (acknowledgements that the session swallows, such as ``subscribed``)."""
    session: Any = stream._session
    handle = session.handle
    seen = asyncio.Event()
    counter = {"n": 0}

    def spy(message: dict[str, Any]) -> Any:
        if message.get("type") == kind:
            counter["n"] += 1
            if counter["n"] >= count:
                seen.set()
        return handle(message)

    session.handle = spy
    return seen


def on_open(stream: Stream[Any]) -> asyncio.Event:
    """Test seam: an event set once the stream's connection is open."""
    session: Any = stream._session
    opened = session.opened
    done = asyncio.Event()

    async def spy(ws: Any) -> None:
        await opened(ws)
        done.set()

    session.opened = spy
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --------------------------------------------------------------------------- REST


async def test_calls_transcripts_status_and_lookups(client: AsyncClient) -> None:
    """create_call, both appends, set_status, get_call and list_calls return the server's data."""
    sid = new_sid()
    call = await client.create_call(
        sid, to_phone_number="+14155550100", customer_phone_number="+14155550199", status="ringing"
    )
    assert call["call_sid"] == sid and call["status"] == "ringing"
    assert call["call_type"] == "inbound" and call["to_phone_number"] == "+14155550100"
    assert await client.set_status(sid, "in-progress", {"agent": "a1"}) == 2
    assert await client.append_transcript(sid, "Hello.", speaker="assistant", confidence=0.9) == 3
    seqs = await client.append_transcripts(
        sid, [said("Hi, I need help.", segment_id="s1"), said("With my bill.", segment_start=2.0)]
    )
    assert seqs == [4, 5]
    got = await client.get_call(sid)
    assert got["status"] == "in-progress"
    assert [(t["seq"], t["content"]) for t in got["transcript"]] == [
        (3, "Hello."),
        (4, "Hi, I need help."),
        (5, "With my bill."),
    ]
    first = await client.get_call(sid, limit=2)
    assert [t["seq"] for t in first["transcript"]] == [3, 4] and first["next_cursor"]
    rest = await client.get_call(sid, limit=2, cursor=first["next_cursor"])
    assert [t["seq"] for t in rest["transcript"]] == [5] and rest["next_cursor"] is None
    finals = await client.final_transcript(sid, page_size=1)
    assert [t["seq"] for t in finals] == [3, 4, 5]
    assert await client.set_status(sid, "completed") == 6
    assert (await client.get_call(sid))["ended_at"] is not None

    other = new_sid()
    await client.create_call(other)
    page = await client.list_calls(limit=1)
    assert [c["call_sid"] for c in page["calls"]] == [other], "newest first"
    assert page["next_cursor"]
    second = await client.list_calls(limit=1, cursor=page["next_cursor"])
    assert [c["call_sid"] for c in second["calls"]] == [sid]
    ended = await client.list_calls(status="completed", limit=200)
    assert sid in {c["call_sid"] for c in ended["calls"]}
    assert other not in {c["call_sid"] for c in ended["calls"]}


async def test_typed_errors(server: ServerProcess, tenant_a: Tenant, client: AsyncClient) -> None:
    """401, 403, 404, 409 and 422 raise their classes with the server's code and message."""
    sid = new_sid()
    await client.create_call(sid)
    async with AsyncClient(server.base_url, api_key="scl_" + "x" * 43) as bad:
        with pytest.raises(AuthenticationError) as auth:
            await bad.get_call(sid)
    assert (auth.value.status, auth.value.code) == (401, "authentication_failed")
    async with AsyncClient(server.base_url, api_key=tenant_a.read) as reader:
        with pytest.raises(PermissionDeniedError) as denied:
            await reader.create_call(new_sid())
        assert (await reader.get_call(sid))["call_sid"] == sid, "read may look up"
    assert (denied.value.status, denied.value.code) == (403, "forbidden")
    with pytest.raises(NotFoundError) as missing:
        await client.get_call(new_sid())
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "not found" in missing.value.message
    with pytest.raises(ConflictError) as duplicate:
        await client.create_call(sid)
    assert duplicate.value.code == "conflict"
    await client.set_status(sid, "completed")
    with pytest.raises(ConflictError) as ended:
        await client.append_transcript(sid, "too late", speaker="user")
    assert (ended.value.status, ended.value.code) == (409, "call_ended")
    live = new_sid()
    await client.create_call(live)
    with pytest.raises(InvalidRequestError) as invalid:
        await client.append_transcript(live, "x", speaker="user", confidence=2.0)
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_request")
    problems = invalid.value.details["details"]
    assert any("confidence" in p["loc"] for p in problems), problems
    with pytest.raises(InvalidRequestError) as empty_speaker:
        await client.append_transcript(live, "who said it?", speaker="")
    assert empty_speaker.value.status == 422


async def test_campaign_rest_and_progress_stream(client: AsyncClient) -> None:
    """Campaign REST calls work and campaign_progress yields progress, each contact's result
    and campaign_completed, then ends."""
    campaign = await client.create_campaign("Renewals")
    assert campaign["status"] == "draft" and campaign["name"] == "Renewals"
    cid = campaign["id"]
    with pytest.raises(InvalidRequestError):
        await client.start_campaign(cid)  # no contacts yet
    contacts = await client.add_contacts(
        cid, [{"phone_number": "+14155550001", "name": "Ada"}, {"phone_number": "+14155550002"}]
    )
    assert [c["status"] for c in contacts] == ["pending", "pending"]
    started = await client.start_campaign(cid)
    assert started["status"] == "running"
    assert started["progress"]["pending_contacts"] == 2
    with pytest.raises(ConflictError):
        await client.start_campaign(cid)

    stream = client.campaign_progress(cid)
    async with stream:
        first = await asyncio.wait_for(stream.__anext__(), RECV_TIMEOUT)
        assert isinstance(first, CampaignProgress) and first.campaign_id == cid
        assert first.counters["total_contacts"] == 2
        done = await client.record_outcome(cid, contacts[0]["id"], "success", duration=12.5)
        assert (done["status"], done["duration"]) == ("success", 12.5)
        with pytest.raises(ConflictError):
            await client.record_outcome(cid, contacts[0]["id"], "failed")
        await client.record_outcome(cid, contacts[1]["id"], "failed", error="voicemail")
        rest = await collect(stream)
    completed = [e for e in rest if isinstance(e, ContactCompleted)]
    assert len(completed) == 2
    assert isinstance(rest[-1], CampaignCompleted)
    assert rest[-1].summary["completed_contacts"] == 2
    assert rest[-1].summary["successful_contacts"] == 1
    final = [e for e in rest if isinstance(e, CampaignProgress)][-1]
    assert final.counters["completion_percentage"] == 100
    assert stream.reconnects == 0
    got = await client.get_campaign(cid)
    assert got["status"] == "completed" and got["progress"]["failed_contacts"] == 1
    with pytest.raises(NotFoundError):
        await client.get_campaign(10**9)


async def test_bot_rest(server: ServerProcess, tenant_a: Tenant, client: AsyncClient) -> None:
    """create_bot, get_bot, list_bots and stop_bot, with URLs shown by scope."""
    bot = await client.create_bot(MEETING_URL, "Notetaker")
    assert bot["status"] == "joining" and bot["bot_name"] == "Notetaker"
    assert bot["websocket_url"].startswith("ws://") and bot["producer_url"]
    plain = await client.create_bot(MEETING_URL, "Recorder", transcription_model="batch")
    assert plain["websocket_url"] is None and plain["websocket_read_only_url"] is None
    async with AsyncClient(server.base_url, api_key=tenant_a.read) as reader:
        seen = await reader.get_bot(bot["id"])
        assert seen["websocket_read_only_url"] and seen["producer_url"] is None
        listed = await reader.list_bots(status="joining", limit=200)
        assert {bot["id"], plain["id"]} <= {b["id"] for b in listed}
        with pytest.raises(PermissionDeniedError):
            await reader.stop_bot(bot["id"])
    stopped = await client.stop_bot(bot["id"])
    assert stopped["status"] == "finished" and stopped["stop_reason"] == "manually_stopped"
    assert stopped["websocket_url"] is None
    with pytest.raises(ConflictError) as again:
        await client.stop_bot(bot["id"])
    assert again.value.code == "bot_ended"
    assert [b["id"] for b in await client.list_bots(limit=1)] == [plain["id"]]
    with pytest.raises(NotFoundError):
        await client.get_bot("00000000-0000-0000-0000-000000000000")
    with pytest.raises(InvalidRequestError):
        await client.create_bot("ftp://meet.example.com/x", "Notetaker")


async def test_tokens(server: ServerProcess, client: AsyncClient) -> None:
    """create_token mints a call-restricted token that opens that call's stream and nothing else."""
    sid = new_sid()
    await client.create_call(sid)
    await client.set_status(sid, "completed")
    minted = await client.create_token(scopes=["read"], expires_in=60, call_sid=sid)
    assert minted["token_type"] == "Bearer" and minted["call_sid"] == sid
    assert minted["scopes"] == ["read"] and minted["expires_in"] == 60
    with pytest.raises(InvalidRequestError):
        await client.create_token(expires_in=0)
    async with AsyncClient(
        server.base_url, token=minted["token"], backoff=SLOW_BACKOFF
    ) as restricted:
        assert (await restricted.get_call(sid))["status"] == "completed"
        events = await collect(restricted.live_transcript(sid))
        assert [e.status for e in events] == ["completed", "in-progress", "completed"]
        with pytest.raises(PermissionDeniedError):
            await restricted.list_calls()
        with pytest.raises(PermissionDeniedError):
            await restricted.create_token()
        stream = restricted.live_transcript(new_sid())
        with pytest.raises(StreamRefused) as refused:
            await collect(stream)
        assert refused.value.code == "forbidden" and stream.reconnects == 0


async def test_connection_failed_when_nothing_listens(caplog: pytest.LogCaptureFixture) -> None:
    """REST raises ConnectionFailedError and a stream gives up with ReconnectFailed, each
    naming the address that failed; a bot URL's token shows in neither, nor in a log."""
    caplog.set_level(logging.DEBUG, logger="scribeline.client")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    backoff = Backoff(initial=0.01, maximum=0.02, max_attempts=3)
    async with AsyncClient(base, api_key="scl_x", timeout=2.0, backoff=backoff) as nobody:
        with pytest.raises(ConnectionFailedError, match=f"cannot reach {base} "):
            await nobody.get_call("CA1")
        stream = nobody.live_transcript("CA1")
        with pytest.raises(ReconnectFailed, match=f"ws://127.0.0.1:{port}/live-transcript/CA1"):
            await collect(stream)
        assert stream.reconnects == 0, "no connection was ever open"
        bot_url = f"ws://127.0.0.1:{port}/v1/bots/b1/subscribe?token=SECRET-TOKEN"
        with pytest.raises(ReconnectFailed) as failed:
            await collect(nobody.bot_stream(bot_url))
    assert f"ws://127.0.0.1:{port}/v1/bots/b1/subscribe" in str(failed.value)
    assert "SECRET-TOKEN" not in str(failed.value) and "SECRET-TOKEN" not in caplog.text
    assert "scl_x" not in caplog.text
    with pytest.raises(ValueError):
        AsyncClient("127.0.0.1:8000")
    with pytest.raises(ValueError):
        AsyncClient(base, api_key="a", token="b")


# --------------------------------------------------------------------------- live transcript


async def test_live_transcript_yields_typed_events_and_ends(client: AsyncClient) -> None:
    """History then live events arrive typed and in seq order; the stream ends after completed."""
    sid = new_sid()
    await client.create_call(sid)
    await client.append_transcript(sid, "Hel", speaker="user", is_final=False, segment_id="s1")
    await client.append_transcript(
        sid, "Hello.", speaker="user", segment_id="s1", confidence=0.75, segment_start=0.5
    )
    stream = client.live_transcript(sid)
    events: list[Any] = []
    async with stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, TranscriptEvent) and event.seq == 3:
                # Caught up with history: what follows is live.
                await client.append_transcript(sid, "Hi! How can I help?", speaker="assistant")
                await client.set_status(sid, "completed", {"reason": "done"})
    snapshot, initial, final, live, end = events
    assert isinstance(snapshot, StatusEvent) and snapshot.seq is None
    assert snapshot.status == "in-progress" and snapshot.call_sid == sid
    assert isinstance(initial, StatusEvent) and (initial.seq, initial.status) == (1, "in-progress")
    assert isinstance(final, TranscriptEvent)
    assert (final.seq, final.content, final.is_final, final.segment_id) == (3, "Hello.", True, "s1")
    assert (final.speaker, final.confidence, final.segment_start) == ("user", 0.75, 0.5)
    assert final.timestamp.endswith("Z") and final.raw["data"]["content"] == "Hello."
    assert isinstance(live, TranscriptEvent) and (live.seq, live.speaker) == (4, "assistant")
    assert isinstance(end, StatusEvent) and end.terminal and end.seq == 5
    assert end.metadata["reason"] == "done" and end.metadata["ended_at"]
    assert stream.reconnects == 0
    # An ended call: its history, then the end.
    again = await collect(client.live_transcript(sid))
    assert [e.seq for e in again] == [None, 1, 3, 4, 5], "the superseded partial is skipped"


async def test_finals_only_and_since(client: AsyncClient) -> None:
    """finals_only leaves partials out; since starts after that seq."""
    sid = new_sid()
    await client.create_call(sid)
    await client.append_transcripts(
        sid,
        [
            said("one", is_final=False, segment_id="a"),
            said("one two", is_final=False, segment_id="b"),
            said("final a", segment_id="a"),
            said("partial c", is_final=False, segment_id="c"),
        ],
    )
    await client.set_status(sid, "completed")
    finals = await collect(client.live_transcript(sid, finals_only=True))
    assert [(e.seq, getattr(e, "content", None)) for e in finals] == [
        (None, None),
        (1, None),
        (4, "final a"),
        (6, None),
    ]
    everything = await collect(client.live_transcript(sid))
    assert [e.seq for e in everything] == [None, 1, 3, 4, 5, 6], "b and c have no final yet"
    since = await collect(client.live_transcript(sid, since=4))
    assert [e.seq for e in since] == [None, 5, 6]
    assert since[0].seq is None and since[0].status == "completed"


@pytest.mark.parametrize("case", ["unknown_call", "other_org", "bad_key", "write_only"])
async def test_refusals_raise_promptly_and_are_not_retried(
    server: ServerProcess, tenant_a: Tenant, tenant_b: Tenant, case: str
) -> None:
    """A 1008 refusal raises StreamRefused with the server's code at once, with no reconnection."""
    theirs = new_sid()
    async with AsyncClient(server.base_url, api_key=tenant_b.rw) as other:
        await other.create_call(theirs)
    key, sid, code = {
        "unknown_call": (tenant_a.rw, new_sid(), "not_found"),
        "other_org": (tenant_a.rw, theirs, "not_found"),
        "bad_key": ("scl_" + "y" * 43, theirs, "authentication_failed"),
        "write_only": (tenant_b.write, theirs, "forbidden"),
    }[case]
    async with AsyncClient(server.base_url, api_key=key, backoff=SLOW_BACKOFF) as client:
        stream = client.live_transcript(sid)
        started = time.monotonic()
        with pytest.raises(StreamRefused) as refused:
            await collect(stream)
        elapsed = time.monotonic() - started
    assert refused.value.code == code
    assert refused.value.close_code == 1008
    assert refused.value.message
    assert stream.reconnects == 0
    assert elapsed < QUICK, f"refusal took {elapsed:.2f} s: was it retried?"


async def test_aclose_from_another_task_ends_the_iteration(client: AsyncClient) -> None:
    """aclose() while another task is waiting in the stream ends that task's loop cleanly."""
    sid = new_sid()
    await client.create_call(sid)
    stream = client.live_transcript(sid)
    first = asyncio.Event()
    seen: list[Any] = []

    async def consume() -> None:
        async for event in stream:
            seen.append(event)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), RECV_TIMEOUT)
    await stream.aclose()
    await asyncio.wait_for(task, RECV_TIMEOUT)
    assert [e.seq for e in seen] == [None, 1]
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


# --------------------------------------------------------------------------- events and bots


async def test_events_with_topics_and_filter(client: AsyncClient) -> None:
    """events() delivers the subscribed topics for the filtered call only."""
    mine, other = new_sid(), new_sid()
    await client.create_call(mine)
    await client.create_call(other)
    statuses = client.events(["call_status"], filter=mine)
    everything = client.events(["transcription", "call_status"])
    ready = [on_message(statuses, "subscribed"), on_message(everything, "subscribed", 2)]
    got: dict[str, list[Any]] = {"statuses": [], "everything": []}

    async def consume(name: str, stream: Stream[Any], last: int) -> None:
        async with stream:
            async for event in stream:
                if getattr(event, "call_sid", None) not in (mine, other):
                    continue  # another test's call
                got[name].append(event)
                if len(got[name]) == last:
                    return

    tasks = [
        asyncio.create_task(consume("statuses", statuses, 1)),
        asyncio.create_task(consume("everything", everything, 4)),
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), RECV_TIMEOUT)
    await client.append_transcript(other, "not for the filter", speaker="user")
    await client.set_status(other, "ringing")
    await client.append_transcript(mine, "for everyone", speaker="assistant")
    await client.set_status(mine, "completed")
    await asyncio.wait_for(asyncio.gather(*tasks), RECV_TIMEOUT)
    [status] = got["statuses"]
    assert isinstance(status, StatusEvent)
    assert (status.call_sid, status.seq, status.status) == (mine, 3, "completed")
    assert [(type(e).__name__, e.call_sid, e.seq) for e in got["everything"]] == [
        ("TranscriptEvent", other, 2),
        ("StatusEvent", other, 3),
        ("TranscriptEvent", mine, 2),
        ("StatusEvent", mine, 3),
    ]


async def test_bot_stream_reads_events_and_sends_chat(client: AsyncClient) -> None:
    """bot_stream yields the bot's events, send_chat reaches the producer, and stop ends it."""
    bot = await client.create_bot(MEETING_URL, "Notetaker")
    producer = await open_url(bot["producer_url"])
    try:
        assert await produce(producer, "start") == 1
        stream = client.bot_stream(bot["websocket_url"])
        opened = on_open(stream)
        events: list[BotEvent] = []

        async def consume() -> None:
            async with stream:
                async for event in stream:
                    events.append(event)

        task = asyncio.create_task(consume())
        await asyncio.wait_for(opened.wait(), RECV_TIMEOUT)
        await stream.send_chat("Welcome!")
        action = await recv_json(producer)  # the subscriber is live once its action arrives
        assert action == {"action": "chat-message", "data": {"content": "Welcome!"}}
        chat = {"username": "Notetaker", "content": "Welcome!", "user_avatar": None}
        assert await produce(producer, "chat-message", chat) == 2
        assert await produce(producer, "ts", ts("Hello everyone.", 0.5, 1.5, 1, "Ada")) == 3
        await produce(producer, "stop", {"reason": "meeting_ended"})
        await asyncio.wait_for(task, RECV_TIMEOUT)
    finally:
        await producer.close()
    assert [e.type for e in events] == ["chat-message", "ts", "stop"]
    assert events[0].data == chat
    assert events[1].data["transcript"] == "Hello everyone."
    assert events[1].data["speaker_name"] == "Ada"
    assert events[2].ends and stream.reconnects == 0
    with pytest.raises(ConnectionError):
        await stream.send_chat("after the end")
    # An ended bot: accepted and closed at once, no events.
    assert await collect(client.bot_stream(bot["websocket_read_only_url"] or "ws://x")) == []
    with pytest.raises(ValueError):
        client.bot_stream("http://not-a-websocket")


async def test_bot_stream_refuses_a_bad_token(client: AsyncClient, tenant_a: Tenant) -> None:
    """A bot URL carrying an API key instead of its capability token is refused with
    StreamRefused and not retried."""
    bot = await client.create_bot(MEETING_URL, "Notetaker")
    forged = bot["websocket_url"].split("?token=")[0] + "?token=" + tenant_a.rw
    stream = client.bot_stream(forged, keepalive=KeepAlive(1.0, 3.0))
    with pytest.raises(StreamRefused) as refused:
        await collect(stream)
    assert refused.value.code == "forbidden" and refused.value.close_code == 1008
    assert stream.reconnects == 0
    await client.stop_bot(bot["id"])


# --------------------------------------------------------------------------- blocking client


def test_sync_client_rest_and_stream(server: ServerProcess, tenant_a: Tenant) -> None:
    """The blocking Client runs the REST calls and iterates a live transcript to its end."""
    sid = new_sid()
    with Client(server.base_url, api_key=tenant_a.rw) as client:
        assert client.create_call(sid)["call_sid"] == sid
        assert client.append_transcript(sid, "Hello!", speaker="assistant") == 2
        assert client.append_transcripts(sid, [said("Hi."), said("Bye.")]) == [3, 4]
        assert client.set_status(sid, "completed") == 5
        assert len(client.get_call(sid)["transcript"]) == 3
        events = list(client.live_transcript(sid, finals_only=True))
        assert [e.seq for e in events] == [None, 1, 2, 3, 4, 5]
        assert [e.content for e in events if isinstance(e, TranscriptEvent)] == [
            "Hello!",
            "Hi.",
            "Bye.",
        ]
        since = client.live_transcript(sid, since=3)
        assert next(since).seq is None
        since.close()  # leaving early closes the stream
        with pytest.raises(NotFoundError):
            client.get_call(new_sid())
        with pytest.raises(AttributeError):
            client.no_such_method  # noqa: B018
    with pytest.raises(ValueError):
        Client("nonsense")
