"""What event-stream subscriptions cost, and how many an organization may hold.

An event's cost must depend on who wants it, not on how many filters exist:
many connections holding many filters that match nothing may not make
ingest measurably dearer. And subscriptions are bounded per organization as
well as per connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psutil
import pytest
from websockets.asyncio.client import ClientConnection

from .helpers import (
    Api,
    ServerProcess,
    Tenant,
    connect_ingest,
    new_sid,
    recv_json,
    running_server,
    send_json,
    transcript,
)
from .test_event_stream import act, connect_events, expect_error

CONNECTIONS = 100
FILTERS_EACH = 100
EVENTS = 400
ORG_LIMIT = 5


@pytest.fixture(scope="module")
def scale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"SCRIBELINE_MAX_SUBSCRIPTIONS_PER_ORGANIZATION": str(CONNECTIONS * FILTERS_EACH + 1)}
    with running_server(tmp_path_factory.mktemp("events-scale") / "data", env) as srv:
        yield srv


@pytest.fixture(scope="module")
def org_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"SCRIBELINE_MAX_SUBSCRIPTIONS_PER_ORGANIZATION": str(ORG_LIMIT)}
    with running_server(tmp_path_factory.mktemp("events-org-limit") / "data", env) as srv:
        yield srv


async def _ingest_cpu(server: ServerProcess, key: str, sid: str) -> float:
    """Server CPU seconds spent storing and publishing ``EVENTS`` transcripts."""
    process = psutil.Process(server.pid)
    before = process.cpu_times()
    async with await connect_ingest(server, sid, key) as producer:
        for n in range(EVENTS):
            await send_json(producer, transcript(f"line {n}", ref=n))
        for _ in range(EVENTS):
            assert (await recv_json(producer, within=60))["type"] == "ack"
    after = process.cpu_times()
    return (after.user + after.system) - (before.user + before.system)


async def _subscribe_many(ws: ClientConnection, prefix: str) -> None:
    """FILTERS_EACH subscriptions to calls that do not exist, pipelined."""
    for n in range(FILTERS_EACH):
        await send_json(
            ws, {"action": "subscribe", "topic": "transcription", "filter": f"{prefix}x{n}"}
        )
    for _ in range(FILTERS_EACH):
        assert (await recv_json(ws, within=30))["type"] == "subscribed"


async def test_filters_that_match_nothing_do_not_make_events_dearer(
    scale_server: ServerProcess, api_a: Api
) -> None:
    """Ingest costs about the same server CPU with 10,000 non-matching filters held
    by 100 connections as with none (each filter used to be tried on every event)."""
    tenant = scale_server.create_tenant("scale")
    api = Api(api_a.session, scale_server, tenant.rw)
    quiet, busy = new_sid(), new_sid()
    await api.create_call(quiet)
    await api.create_call(busy)
    watcher = await connect_events(scale_server, tenant.read)
    await act(watcher, "call_status", "*")  # the firehose is followed in both runs
    baseline = await _ingest_cpu(scale_server, tenant.write, quiet)

    connections = [await connect_events(scale_server, tenant.read) for _ in range(CONNECTIONS)]
    try:
        await asyncio.gather(*(_subscribe_many(ws, f"CA{i}") for i, ws in enumerate(connections)))
        loaded = await _ingest_cpu(scale_server, tenant.write, busy)
    finally:
        await asyncio.gather(*(ws.close() for ws in connections))
        await watcher.close()
    assert loaded < 2.0 * baseline + 0.2, (
        f"{EVENTS} events took {loaded:.2f} s of server CPU with "
        f"{CONNECTIONS * FILTERS_EACH} idle filters, {baseline:.2f} s without"
    )


async def test_subscriptions_are_bounded_per_organization(org_limit_server: ServerProcess) -> None:
    """The organization's connections together hold at most the configured number of
    subscriptions; past it a subscribe gets ``rate_limited`` (the connection stays
    open), and a subscription given up frees its slot."""
    tenant: Tenant = org_limit_server.create_tenant("bounded")
    first = await connect_events(org_limit_server, tenant.read)
    second = await connect_events(org_limit_server, tenant.read)
    other_org = org_limit_server.create_tenant("unbounded-neighbour")
    neighbour = await connect_events(org_limit_server, other_org.read)
    try:
        for sid in ("CA1", "CA2", "CA3"):
            await act(first, "transcription", sid)
        for sid in ("CA4", "CA5"):
            await act(second, "transcription", sid)
        await send_json(second, {"action": "subscribe", "topic": "transcription", "filter": "*"})
        error = await expect_error(second, "rate_limited")
        assert "organization" in error["message"]
        await act(neighbour, "transcription", "*")  # another organization has its own bound
        await act(first, "transcription", "CA1", "unsubscribe")
        await act(second, "transcription", "*")
    finally:
        for ws in (first, second, neighbour):
            await ws.close()
