"""Joining and resuming while events are published at full speed: no gap, no duplicate."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp
from websockets.exceptions import ConnectionClosed

from .helpers import (
    Api,
    ServerProcess,
    Tenant,
    collect_until_closed,
    connect_ingest,
    new_sid,
    open_live,
    recv_json,
    send_json,
    transcript,
)

ROUNDS = 5
EVENTS_PER_ROUND = 300
SUBSCRIBERS_PER_ROUND = 20


@dataclass
class Joined:
    since: int | None
    acked_when_joined: int = 0
    seqs: list[int] = field(default_factory=list)
    close_code: int = 0


@dataclass
class Progress:
    last_acked: int = 1


async def _subscribe(
    server: ServerProcess, sid: str, key: str, joined: Joined, progress: Progress
) -> Joined:
    ws, _ = await open_live(server, sid, key, since=joined.since)
    joined.acked_when_joined = progress.last_acked
    msgs, joined.close_code = await collect_until_closed(ws, within=20)
    joined.seqs = [m["seq"] for m in msgs]
    return joined


async def _round(server: ServerProcess, tenant: Tenant, api: Api, rng: random.Random) -> int:
    """Run one round; return how many subscribers joined before publishing ended."""
    sid = new_sid()
    await api.create_call(sid)
    end_seq = EVENTS_PER_ROUND + 2  # seq 1 is the initial status, the last one is "completed"
    # Joins are triggered by acks; handshakes take longer than acks, so trigger them in the
    # first 60% of the stream to land most of them while events are still pouring in.
    join_window = EVENTS_PER_ROUND * 6 // 10
    join_at = sorted(rng.randrange(join_window) for _ in range(SUBSCRIBERS_PER_ROUND))
    progress = Progress()
    tasks: list[asyncio.Task[Joined]] = []
    async with await connect_ingest(server, sid, tenant.write) as producer:

        async def publish() -> None:
            for i in range(EVENTS_PER_ROUND):
                await send_json(producer, transcript(f"event {i}", ref=i))
            await send_json(producer, {"type": "status", "status": "completed", "metadata": {}})

        sender = asyncio.create_task(publish())
        for i in range(EVENTS_PER_ROUND + 1):
            ack = await recv_json(producer)
            assert ack.get("type") == "ack" and ack.get("seq") == i + 2, ack
            progress.last_acked = ack["seq"]
            while join_at and join_at[0] <= i:
                join_at.pop(0)
                since = None if rng.random() < 0.5 else rng.randint(1, progress.last_acked)
                joined = Joined(since=since)
                tasks.append(
                    asyncio.create_task(_subscribe(server, sid, tenant.read, joined, progress))
                )
                await asyncio.sleep(0)  # let the subscriber start its handshake now
        await sender

    results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for joined in results:
        start = (joined.since or 0) + 1
        expected = list(range(start, end_seq + 1))
        if joined.seqs != expected:
            missing = sorted(set(expected) - set(joined.seqs))
            dupes = sorted({s for s in joined.seqs if joined.seqs.count(s) > 1})
            raise AssertionError(
                f"subscriber since={joined.since} joined at seq {joined.acked_when_joined}: "
                f"missing {missing[:20]}, duplicates {dupes[:20]}, "
                f"out of order: {joined.seqs != sorted(joined.seqs)}"
            )
        assert joined.close_code == 1000
    return sum(1 for j in results if j.acked_when_joined < end_seq)


async def test_subscribers_joining_during_full_speed_publishing_see_every_event_once(
    fanout_server: ServerProcess, fanout_tenant: Tenant
) -> None:
    """Subscribers that join (some with since) while events pour in each see every seq from their
    start exactly once, in order."""
    rng = random.Random(20260119)
    mid_stream_joins = 0
    async with aiohttp.ClientSession() as session:
        api = Api(session, fanout_server, fanout_tenant.rw)
        for _ in range(ROUNDS):
            mid_stream_joins += await _round(fanout_server, fanout_tenant, api, rng)
    # Guard against a scenario that no longer races: most joins must land mid-stream.
    assert mid_stream_joins >= ROUNDS * SUBSCRIBERS_PER_ROUND // 4, mid_stream_joins


async def test_resume_after_an_aborted_connection_loses_and_repeats_nothing(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A subscriber whose TCP connection is aborted mid-stream and resumes with since misses nothing
    and sees nothing twice."""
    sid = new_sid()
    await api_a.create_call(sid)
    phases = 4
    per_phase = 100
    abort_after = [60, 170, 280]  # received counts at which the client kills its socket
    aborted = asyncio.Queue[int]()
    end_seq = phases * per_phase + 2

    async with await connect_ingest(server, sid, tenant_a.write) as producer:

        async def publish() -> None:
            n = 0
            for phase in range(phases):
                if phase:
                    await aborted.get()  # next phase goes out while the client is away
                for _ in range(per_phase):
                    await send_json(producer, transcript(f"event {n}"))
                    n += 1
            await send_json(producer, {"type": "status", "status": "completed", "metadata": {}})

        async def drain_acks() -> None:
            for i in range(phases * per_phase + 1):
                ack = await recv_json(producer, within=20)
                assert ack.get("seq") == i + 2, ack

        publisher = asyncio.create_task(publish())
        acks = asyncio.create_task(drain_acks())

        seen: list[int] = []
        since: int | None = None
        connections = 0
        close_code = None
        while close_code is None:
            ws, _ = await open_live(server, sid, tenant_a.read, since=since)
            connections += 1
            try:
                while True:
                    msg = await recv_json(ws, within=20)
                    seen.append(msg["seq"])
                    if abort_after and len(seen) >= abort_after[0]:
                        abort_after.pop(0)
                        ws.transport.abort()
                        aborted.put_nowait(len(seen))
                        break
            except ConnectionClosed as exc:
                assert exc.rcvd is not None, f"dropped without a close frame: {exc}"
                close_code = exc.rcvd.code
            since = seen[-1]
        await asyncio.wait_for(asyncio.gather(publisher, acks), 20)

    assert connections == 4
    assert close_code == 1000
    assert seen == list(range(1, end_seq + 1)), (
        f"missing {sorted(set(range(1, end_seq + 1)) - set(seen))[:20]}, "
        f"{len(seen) - len(set(seen))} duplicates"
    )
