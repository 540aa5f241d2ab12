"""A long call is served in bounded pages and never stalls other clients.

The final transcript over REST is paginated; a WebSocket history replay is
read and encoded page by page, yielding to the event loop in between, so
that one client reading a long call costs everyone else milliseconds, not
seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import aiohttp
import pytest

from .helpers import Api, RawWebSocket, ServerProcess, Tenant, new_sid, running_server, transcript

T = TypeVar("T")

#: Transcripts in the long call (about 40,000 events, several MiB of history).
LONG_CALL = 40_000
#: The longest /healthz may take while the long call is read. Before pagination
#: one read held the event loop for most of a second.
MAX_STALL = 0.2


@pytest.fixture(scope="module")
def long_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("long") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def long_tenant(long_server: ServerProcess) -> Tenant:
    return long_server.create_tenant("longcalls")


async def test_the_final_transcript_pages_through_every_final_once(api_a: Api) -> None:
    """Pages of any size concatenate to exactly the call's finals in seq order: the
    latest final of each segment (a correction replaces the first final even when
    it comes pages later), finals without a segment, no partials."""
    sid = new_sid()
    await api_a.create_call(sid)
    bodies: list[dict[str, Any]] = []
    for n in range(12):
        bodies.append(transcript(f"partial {n}", is_final=False, segment_id=f"s{n}"))
        bodies.append(transcript(f"final {n}", segment_id=f"s{n}"))
        bodies.append(transcript(f"loose {n}"))
    bodies.append(transcript("final 3, corrected", segment_id="s3"))
    bodies.append(transcript("still speaking", is_final=False, segment_id="s99"))
    seqs = await api_a.post_transcripts(sid, bodies)
    stored = dict(zip(seqs, bodies, strict=True))
    corrected = seqs[-2]
    expected = [
        (seq, body["content"])
        for seq, body in stored.items()
        if body["is_final"] and body.get("segment_id") != "s3"
    ]
    expected.append((corrected, "final 3, corrected"))
    expected.sort()

    for limit in (1, 4, 7, 1000):
        got = await api_a.final_transcript(sid, limit=limit)
        assert [(t["seq"], t["content"]) for t in got] == expected, limit
    first = await api_a.request("GET", f"/v1/calls/{sid}?limit=5")
    assert len(first.body["transcript"]) == 5 and first.body["next_cursor"] is not None
    last = await api_a.request("GET", f"/v1/calls/{sid}?limit=1000")
    assert last.body["next_cursor"] is None


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=²", "limit=-1", "limit=1e3", "cursor=x", "cursor=²"]
)
async def test_bad_page_parameters_are_refused(api_a: Api, query: str) -> None:
    """A page size or cursor that is not a plain integer in range is a 422."""
    sid = new_sid()
    await api_a.create_call(sid)
    resp = await api_a.request("GET", f"/v1/calls/{sid}?{query}")
    assert resp.status == 422, resp.text
    assert resp.body["error"] == "invalid_request"


async def _fill(api: Api, sid: str, count: int) -> int:
    await api.create_call(sid)
    last = 0
    for start in range(0, count, 1000):
        batch = [
            transcript(f"line {n} " + "words " * 30, segment_id=f"s{n}")
            for n in range(start, min(start + 1000, count))
        ]
        last = (await api.post_transcripts(sid, batch))[-1]
    return last


async def _worst_healthz(api: Api, done: asyncio.Event) -> float:
    """The slowest /healthz answer until ``done`` is set."""
    worst = 0.0
    while not done.is_set():
        started = time.monotonic()
        resp = await api.request("GET", "/healthz", key=None)
        assert resp.status == 200
        worst = max(worst, time.monotonic() - started)
        await asyncio.sleep(0.02)  # the probe's own pace, not a wait for a condition
    return worst


async def _replay_fast(server: ServerProcess, sid: str, key: str, head: int) -> None:
    """Read a WebSocket replay as fast as the socket allows, without parsing it (so
    the server is never held back by a slow reader, and this process stays idle
    for the probe)."""
    ws = await RawWebSocket.connect(server, f"/live-transcript/{sid}?token={key}")
    loop = asyncio.get_running_loop()
    marker, tail = f'"seq":{head},'.encode(), b""
    try:
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(ws.sock, 1 << 20), 30)
            assert chunk, "the replay ended early"
            if marker in tail + chunk:
                return
            tail = chunk[-64:]
    finally:
        ws.close()


async def _worst_during(probe: Api, work: Coroutine[Any, Any, T]) -> tuple[T, float]:
    done = asyncio.Event()
    watcher = asyncio.create_task(_worst_healthz(probe, done))
    try:
        result = await work
    finally:
        done.set()
        worst = await watcher
    return result, worst


async def test_a_long_call_does_not_stall_other_clients(
    long_server: ServerProcess, long_tenant: Tenant
) -> None:
    """While one client replays a 40,000-event call over a WebSocket, and while
    another reads its transcript over REST, /healthz on a third connection keeps
    answering within a fraction of a second; a REST page stays around 1 MiB."""
    async with (
        aiohttp.ClientSession() as reader_http,
        aiohttp.ClientSession() as probe_http,
    ):
        api = Api(reader_http, long_server, long_tenant.rw)
        probe = Api(probe_http, long_server, None)
        sid = new_sid()
        head = await _fill(api, sid, LONG_CALL)

        _, replay_worst = await _worst_during(
            probe, _replay_fast(long_server, sid, long_tenant.read, head)
        )

        async def page() -> tuple[int, bytes]:
            async with reader_http.get(
                f"{long_server.base_url}/v1/calls/{sid}?limit=1000",
                headers={"Authorization": f"Bearer {long_tenant.read}"},
            ) as resp:
                return resp.status, await resp.read()

        (status, body), rest_worst = await _worst_during(probe, page())
    assert replay_worst < MAX_STALL, f"/healthz took {replay_worst:.3f} s during a replay"
    assert rest_worst < MAX_STALL, f"/healthz took {rest_worst:.3f} s during a REST read"
    assert status == 200 and len(body) < 1.5 * 1024 * 1024, (status, len(body))
    assert json.loads(body)["next_cursor"] is not None


async def _page_seconds(api: Api, sid: str, cursor: int) -> float:
    """The median time of five one-final pages of ``sid`` from ``cursor``."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        resp = await api.request("GET", f"/v1/calls/{sid}?limit=1&cursor={cursor}")
        times.append(time.monotonic() - started)
        assert resp.status == 200 and len(resp.body["transcript"]) == 1
    return sorted(times)[2]


async def test_a_page_costs_the_same_however_long_the_call(
    long_server: ServerProcess, long_tenant: Tenant
) -> None:
    """Asking for one final near the start of a 40,000-event call takes about as long
    as on a 100-event call: a page does not scan the rest of the call."""
    async with aiohttp.ClientSession() as http:
        api = Api(http, long_server, long_tenant.rw)
        short, long = new_sid(), new_sid()
        await _fill(api, short, 100)
        await _fill(api, long, LONG_CALL)
        short_page = await _page_seconds(api, short, 10)
        long_page = await _page_seconds(api, long, 10)
    assert long_page < 4 * short_page + 0.01, (long_page, short_page)
