"""The webhook outbox on every backend: rows written with their events, claims
exclusive under a lease and a fencing token, one open row per endpoint and call
at a time, retries, giving up, disabling, replay and the delivery log."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from scribeline.errors import Conflict, StreamClosed
from scribeline.events import BotEventType, NewEvent, now_ms
from scribeline.storage import Storage, open_storage
from scribeline.storage.base_webhooks import Claim, EndpointChange, Finish, Replay
from tests.contract.test_bots import _bot
from tests.contract.test_campaigns import _running
from tests.contract.test_catalog import draft, status

LEASE = 30_000
LATER = 10**14  # far in the future: every retry is due, no lease holds


def final(text: str) -> NewEvent:
    return NewEvent("transcript", {"content": text, "is_final": True, "speaker": "user"})


def partial(text: str) -> NewEvent:
    return NewEvent("transcript", {"content": text, "is_final": False, "speaker": "user"})


async def org_with_call(storage: Storage, name: str = "acme") -> tuple[int, str]:
    org = await storage.create_org(name)
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None
    call, _ = await storage.create_call(draft(org.id, assistant.id, f"CA{name}"), status("queued"))
    return org.id, call.stream


async def add_call(storage: Storage, org_id: int, sid: str) -> str:
    assistant = await storage.get_assistant(org_id, None)
    assert assistant is not None
    call, _ = await storage.create_call(draft(org_id, assistant.id, sid), status("queued"))
    return call.stream


async def endpoint(storage: Storage, org_id: int, *events: str) -> int:
    created = await storage.create_webhook(
        org_id, "https://hooks.example.com/in", list(events), b"sealed", 20
    )
    return created.id


async def claim(storage: Storage, now: int | None = None, limit: int = 100) -> list[Claim]:
    return await storage.claim_deliveries(
        now_ms() if now is None else now, LEASE, secrets.token_hex(4), limit
    )


def done(c: Claim, *, ok: bool = True, retry_at: int | None = None, at: int = 0) -> Finish:
    return Finish(
        c.id, c.endpoint_id, c.token, at or now_ms(), 5, 200 if ok else 500,
        None if ok else "HTTP 500", ok, retry_at,
    )  # fmt: skip


async def drain(storage: Storage) -> list[tuple[int, str, int, str]]:
    """Claim and deliver until nothing is due: (endpoint, stream, seq, type) in order."""
    sent: list[tuple[int, str, int, str]] = []
    for _ in range(100):
        claims = await claim(storage, LATER)
        if not claims:
            return sent
        for c in claims:
            sent.append((c.endpoint_id, c.stream, c.seq, c.event_type))
            await storage.finish_delivery(done(c, at=LATER), 10**9)
    raise AssertionError("the outbox never drained")


async def test_an_append_writes_rows_for_the_endpoints_that_subscribe(storage: Storage) -> None:
    """Each webhook event gets one row per enabled endpoint of its organization
    subscribed to its type (none for partials, disabled endpoints or another
    organization's); a refused append writes none; the claim carries the stored
    event and the call's SID."""
    org_id, _ = await org_with_call(storage)
    other_org, _ = await org_with_call(storage, "other")
    finals = await endpoint(storage, org_id, "transcript.final")
    lifecycle = await endpoint(storage, org_id, "call.started", "call.ended")
    off = await endpoint(storage, org_id, "transcript.final")
    await storage.update_webhook(org_id, off, EndpointChange(enabled=False))
    await endpoint(storage, other_org, "transcript.final")
    stream = await add_call(storage, org_id, "CAnew")  # seq 1: call.started
    await storage.append(stream, [partial("hel"), final("hello"), final("bye")])
    await storage.append(stream, [status("completed", closes=True)])
    with pytest.raises(StreamClosed):
        await storage.append(stream, [final("late")])

    first = await claim(storage, LATER)
    by_endpoint = {c.endpoint_id: c for c in first}
    assert set(by_endpoint) == {finals, lifecycle}  # the oldest of each endpoint only
    stored = by_endpoint[finals].stored
    assert stored is not None and stored[0] == "transcript" and stored[2]["content"] == "hello"
    assert by_endpoint[finals].subject == "CAnew"
    assert by_endpoint[lifecycle].event_type == "call.started"
    for c in first:
        await storage.finish_delivery(done(c, at=LATER), 10**9)
    sent = [(e, seq, kind) for e, _, seq, kind in await drain(storage)]
    assert sorted(sent) == [(finals, 4, "transcript.final"), (lifecycle, 5, "call.ended")]


async def test_one_open_row_per_endpoint_and_call_in_seq_order(storage: Storage) -> None:
    """A call's events go one at a time, in seq order, while another call's go
    beside them; finishing one makes the next claimable."""
    org_id, one = await org_with_call(storage)
    two = await add_call(storage, org_id, "CAtwo")
    await endpoint(storage, org_id, "transcript.final")
    for n in range(3):
        await storage.append(one, [final(f"one {n}")])
        await storage.append(two, [final(f"two {n}")])
    sent: dict[str, list[int]] = {one: [], two: []}
    for _ in range(3):
        claims = await claim(storage, LATER)
        assert sorted(c.stream for c in claims) == sorted([one, two])
        assert await claim(storage, LATER) == []  # both held; the rest wait behind them
        for c in claims:
            sent[c.stream].append(c.seq)
            await storage.finish_delivery(done(c, at=LATER), 10**9)
    assert sent == {one: [2, 3, 4], two: [2, 3, 4]}
    assert await claim(storage, LATER) == []


async def test_claims_from_two_stores_never_share_a_row(storage_url: str, tmp_path: Path) -> None:
    """Two stores on one database (two nodes) claiming at the same moment, many
    times over, never hold one row at once."""
    first = await open_storage(storage_url, tmp_path)
    second = await open_storage(storage_url, tmp_path)
    try:
        org = await first.create_org("acme")
        await endpoint(first, org.id, "transcript.final")
        streams = [await add_call(first, org.id, f"CA{n}") for n in range(20)]
        for stream in streams:
            await first.append(stream, [final("a"), final("b")])
        seen: list[tuple[str, int]] = []
        for _ in range(10):
            got = await asyncio.gather(*(claim(s, LATER, 7) for s in (first, second) * 2))
            claims = [c for batch in got for c in batch]
            ids = [c.id for c in claims]
            assert len(ids) == len(set(ids)), "a row was claimed twice"
            assert len({c.stream for c in claims}) == len(claims), "two rows of one call"
            for c in claims:
                seen.append((c.stream, c.seq))
                await first.finish_delivery(done(c, at=LATER), 10**9)
            if not claims:
                break
        assert sorted(seen) == sorted((s, q) for s in streams for q in (2, 3))
    finally:
        await first.close()
        await second.close()


async def test_an_expired_lease_is_claimed_again_and_a_late_finish_is_fenced(
    storage: Storage,
) -> None:
    """A claim holds its row until its lease expires; then another claim takes it
    (a new token, one more attempt), and the first holder's finish changes
    nothing but the log."""
    org_id, stream = await org_with_call(storage)
    endpoint_id = await endpoint(storage, org_id, "transcript.final")
    await storage.append(stream, [final("hello")])
    now = now_ms()
    (held,) = await claim(storage, now)
    assert await claim(storage, now + LEASE - 1) == []
    (again,) = await claim(storage, now + LEASE + 1)
    assert again.id == held.id and again.token != held.token and again.attempts == 2
    assert await storage.finish_delivery(done(held), 10**9) is False
    assert await claim(storage, now + LEASE + 2) == []  # still held by the second claim
    await storage.finish_delivery(done(again), 10**9)
    (delivery,) = await storage.list_deliveries(org_id, endpoint_id, None, 10) or []
    assert delivery.state == "delivered" and len(delivery.log) == 2
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None


async def test_a_failure_waits_for_its_retry_then_dies_and_disables(storage: Storage) -> None:
    """A failed attempt makes the row due again at ``retry_at``; one that gives up
    kills it and, the endpoint failing long enough, disables the endpoint, whose
    rows then wait; enabling it again clears the failure."""
    org_id, stream = await org_with_call(storage)
    endpoint_id = await endpoint(storage, org_id, "transcript.final")
    await storage.append(stream, [final("one"), final("two")])
    now = now_ms()
    (first,) = await claim(storage, now)
    await storage.finish_delivery(done(first, ok=False, retry_at=now + 60_000, at=now), 10**9)
    assert await claim(storage, now + 59_000) == []
    (retry,) = await claim(storage, now + 61_000)
    assert retry.id == first.id and retry.attempts == 2
    # Gives up; failing for less than the window: the endpoint stays.
    assert not await storage.finish_delivery(done(retry, ok=False, at=now + 61_000), 10**9)
    found = await storage.get_webhook(org_id, endpoint_id)
    assert found is not None and found.enabled and found.failing_since == now
    (second,) = await claim(storage, now + 62_000)  # the next event, past the dead one
    assert second.seq == first.seq + 1
    assert await storage.finish_delivery(done(second, ok=False, at=now + 62_000), 1000)
    found = await storage.get_webhook(org_id, endpoint_id)
    assert found is not None and not found.enabled and found.disabled_reason == "failing"
    await storage.append(stream, [final("three")])  # a disabled endpoint gets no rows
    deliveries = await storage.list_deliveries(org_id, endpoint_id, None, 10)
    assert deliveries is not None and [d.state for d in deliveries] == ["dead", "dead"]
    assert [len(d.log) for d in deliveries] == [1, 2]
    assert deliveries[1].log[0].status == 500 and deliveries[1].log[0].error == "HTTP 500"
    enabled = await storage.update_webhook(org_id, endpoint_id, EndpointChange(enabled=True))
    assert enabled is not None and enabled.enabled and enabled.failing_since is None


async def test_replay_queues_finished_deliveries_again(storage: Storage) -> None:
    """A replay by id or by time queues new pending rows for delivered or dead
    deliveries (never one still open), which are claimed again in order; another
    organization cannot replay or read them."""
    org_id, stream = await org_with_call(storage)
    other_org, _ = await org_with_call(storage, "other")
    endpoint_id = await endpoint(storage, org_id, "transcript.final")
    await storage.append(stream, [final("one"), final("two")])
    await drain(storage)
    before = await storage.list_deliveries(org_id, endpoint_id, None, 10)
    assert before is not None and [d.state for d in before] == ["delivered", "delivered"]
    assert await storage.replay_deliveries(other_org, endpoint_id, Replay(ids=(1,)), 0, 10) is None
    assert await storage.list_deliveries(other_org, endpoint_id, None, 10) is None
    now = now_ms()
    ids = tuple(d.id for d in before)
    assert await storage.replay_deliveries(org_id, endpoint_id, Replay(ids=ids), now, 10) == 2
    # Both are open again: a second replay queues nothing.
    assert await storage.replay_deliveries(org_id, endpoint_id, Replay(since=0), now, 10) == 0
    assert [seq for _, _, seq, _ in await drain(storage)] == [2, 3]
    assert await storage.replay_deliveries(org_id, endpoint_id, Replay(since=0), now, 1) == 1


async def test_endpoints_are_per_organization_bounded_and_deleted_with_their_rows(
    storage: Storage,
) -> None:
    """Listing and reading see one organization's endpoints; past the most allowed
    a creation conflicts; deleting one deletes its outbox rows."""
    org_id, stream = await org_with_call(storage)
    other_org, _ = await org_with_call(storage, "other")
    endpoint_id = await endpoint(storage, org_id, "transcript.final", "alert")
    assert await storage.get_webhook(other_org, endpoint_id) is None
    assert [e.id for e in await storage.list_webhooks(org_id)] == [endpoint_id]
    assert await storage.list_webhooks(other_org) == []
    with pytest.raises(Conflict):
        await storage.create_webhook(org_id, "https://x.example/", ["alert"], b"s", 1)
    changed = await storage.update_webhook(
        org_id, endpoint_id, EndpointChange(url="https://y.example/", events=("call.ended",))
    )
    assert changed is not None and changed.url == "https://y.example/"
    assert changed.events == ("call.ended",)
    assert await storage.update_webhook(other_org, endpoint_id, EndpointChange()) is None
    await storage.update_webhook(org_id, endpoint_id, EndpointChange(events=("transcript.final",)))
    await storage.append(stream, [final("one")])
    assert not await storage.delete_webhook(other_org, endpoint_id)
    assert await storage.delete_webhook(org_id, endpoint_id)
    assert await claim(storage, LATER) == []
    assert await storage.get_webhook(org_id, endpoint_id) is None


async def test_a_bots_stop_is_a_webhook_of_its_organization(storage: Storage) -> None:
    """A meeting bot's stream finds its organization through the bot's row: its
    ``stop`` is a ``bot.stopped`` delivery named by the bot's public id."""
    bot = await _bot(storage)
    endpoint_id = await endpoint(storage, bot.org_id, "bot.stopped")
    await storage.append(bot.stream, [NewEvent(BotEventType.START, {})])
    stop = NewEvent(BotEventType.STOP, {"reason": "meeting_ended"}, closes=True)
    await storage.append(bot.stream, [stop])
    (claimed,) = await claim(storage, LATER)
    assert (claimed.endpoint_id, claimed.event_type) == (endpoint_id, "bot.stopped")
    assert claimed.subject == bot.public_id and claimed.stored is not None
    assert claimed.stored[:1] == ("stop",) and claimed.stored[2] == {"reason": "meeting_ended"}


async def test_a_completed_campaign_is_a_webhook_of_its_organization(storage: Storage) -> None:
    """The last outcome completes the campaign: one ``campaign.completed`` delivery
    (none for the contact updates and progress before it)."""
    campaign, ids = await _running(storage, 1)
    endpoint_id = await endpoint(storage, campaign.org_id, "campaign.completed")
    await storage.record_outcome(campaign.id, ids[0], "success", 5.0, None, None)
    (claimed,) = await claim(storage, LATER)
    assert (claimed.endpoint_id, claimed.event_type) == (endpoint_id, "campaign.completed")
    assert claimed.stream == f"campaign:{campaign.id}" and claimed.subject is None
