"""``GET /metrics`` on a real server: it reflects connections, refusals, events,
deliveries and slow consumers; it is restricted by a token or moved to an
address of its own; no label carries a call SID."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .helpers import (
    Api,
    RawWebSocket,
    ServerProcess,
    Tenant,
    connect_ingest,
    expect_refusal,
    new_sid,
    open_live,
    read_until_seq,
    running_server,
    transcript,
)
from .test_cli import scribeline
from .test_event_stream import act, connect_events

TOKEN = "metrics-token-7f3a9c1e5b"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: (metric, frozenset of label items) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Metrics behind a token, 2 connections per call, the smallest send buffers
    (a stalled subscriber is cut off quickly) and the access log on."""
    env = {
        "SCRIBELINE_METRICS_TOKEN": TOKEN,
        "SCRIBELINE_MAX_CONNECTIONS_PER_CALL": "2",
        "SCRIBELINE_SEND_BUFFER_BYTES": "4096",
        "SCRIBELINE_SOCKET_SEND_BUFFER_BYTES": "4096",
        "SCRIBELINE_ACCESS_LOG": "true",
    }
    with running_server(tmp_path_factory.mktemp("metrics") / "data", env) as srv:
        yield srv


@pytest.fixture(scope="module")
def metrics_tenant(metrics_server: ServerProcess) -> Tenant:
    return metrics_server.create_tenant("metered")


async def scrape(
    session: aiohttp.ClientSession, url: str, token: str | None = TOKEN
) -> tuple[Samples, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        text = await resp.text()
        assert resp.status == 200, (resp.status, text)
        assert resp.headers["Content-Type"] == CONTENT_TYPE
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def until(
    session: aiohttp.ClientSession, url: str, done: Callable[[Samples], bool], within: float = 10
) -> Samples:
    """Scrape until ``done`` holds (metrics are read by polling; there is nothing to await)."""
    deadline = time.monotonic() + within
    while True:
        samples, _ = await scrape(session, url)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, "metrics did not reach the expected state"
        await asyncio.sleep(0.05)


async def test_metrics_reflect_streams_refusals_events_and_slow_consumers(
    metrics_server: ServerProcess, metrics_tenant: Tenant
) -> None:
    """Connections, refusals by reason, stored and published events, deliveries, the
    delivery latency, commits and a slow-consumer close all show, and no SID does."""
    url = metrics_server.base_url + "/metrics"
    async with aiohttp.ClientSession() as session:
        api = Api(session, metrics_server, metrics_tenant.rw)
        before, _ = await scrape(session, url)
        sid = (await api.create_call())["call_sid"]
        lives = [(await open_live(metrics_server, sid, metrics_tenant.read))[0] for _ in range(2)]
        events = await connect_events(metrics_server, metrics_tenant.read)
        await act(events, "transcription", "*")
        producer = await connect_ingest(metrics_server, sid, metrics_tenant.write)

        missing_sid = new_sid()
        await expect_refusal(metrics_server, f"/live-transcript/{missing_sid}", "scl_wrong")
        await expect_refusal(metrics_server, f"/live-transcript/{missing_sid}", metrics_tenant.read)
        await expect_refusal(metrics_server, f"/live-transcript/{sid}", metrics_tenant.read)

        seqs = await api.post_transcripts(sid, [transcript(f"line {i}") for i in range(5)])
        for ws in lives:
            await read_until_seq(ws, seqs[-1])

        samples, text = await scrape(session, url)
        for protocol, count in (("live_transcript", 2), ("events", 1), ("producer", 1)):
            assert value(samples, "scribeline_websocket_connections", protocol=protocol) == count

        def grew(name: str, by: float, **labels: str) -> None:
            change = value(samples, name, **labels) - value(before, name, **labels)
            assert change >= by, (name, labels, change)

        grew("scribeline_websocket_connects_total", 2, protocol="live_transcript")
        grew("scribeline_websocket_refusals_total", 1, protocol="live_transcript", reason="auth")
        grew(
            "scribeline_websocket_refusals_total", 1, protocol="live_transcript", reason="not_found"
        )
        grew(
            "scribeline_websocket_refusals_total",
            1,
            protocol="live_transcript",
            reason="connection_limit",
        )
        grew("scribeline_events_stored_total", 6, kind="call")  # the status and 5 transcripts
        grew("scribeline_events_published_total", 6, kind="call")
        grew("scribeline_events_published_total", 6, kind="org")
        grew("scribeline_deliveries_total", 10, channel="stream")
        grew("scribeline_deliveries_total", 5, channel="organization")
        grew("scribeline_delivery_latency_seconds_count", 5)
        grew("scribeline_storage_commit_seconds_count", 2)
        grew("scribeline_storage_commit_batch_size_count", 2)
        for s in (sid, missing_sid):
            assert s not in text

        for ws in (*lives, events, producer):
            await ws.close()
        await until(
            session,
            url,
            lambda s: all(
                value(s, "scribeline_websocket_connections", protocol=p) == 0
                for p in ("live_transcript", "events", "producer")
            ),
        )

        # A subscriber that stops reading is closed with 1013 and counted.
        stalled_sid = (await api.create_call())["call_sid"]
        stalled = await RawWebSocket.connect(
            metrics_server,
            f"/live-transcript/{stalled_sid}?token={metrics_tenant.read}",
            rcvbuf=4096,
        )
        assert stalled.status == 101
        try:
            big = [transcript("x" * 8000) for _ in range(100)]
            await api.post_transcripts(stalled_sid, big)
            slow = await until(
                session,
                url,
                lambda s: (
                    value(
                        s,
                        "scribeline_websocket_slow_consumer_closes_total",
                        protocol="live_transcript",
                    )
                    > value(
                        before,
                        "scribeline_websocket_slow_consumer_closes_total",
                        protocol="live_transcript",
                    )
                ),
            )
            assert value(slow, "scribeline_websocket_connections", protocol="live_transcript") <= 1
        finally:
            stalled.close()
        _, text = await scrape(session, url)
        assert stalled_sid not in text
    assert TOKEN not in metrics_server.stderr_text()


async def test_metrics_want_the_token(metrics_server: ServerProcess) -> None:
    """Without the bearer token, or with another, /metrics answers 401 and shows nothing."""
    url = metrics_server.base_url + "/metrics"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer metrics-token-wrong"}):
            async with session.get(url, headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 401
                assert body["error"] == "authentication_failed"
        async with session.get(url + f"?token={TOKEN}") as resp:
            assert resp.status in (400, 422)
        await scrape(session, url)
    assert TOKEN not in metrics_server.stderr_text()


async def test_metrics_on_an_address_of_their_own(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With metrics_listen set, /metrics is served there (token still required) and
    no longer on the public port; with metrics off, it is nowhere."""
    env = {"SCRIBELINE_METRICS_LISTEN": "127.0.0.1:0", "SCRIBELINE_METRICS_TOKEN": TOKEN}
    with running_server(tmp_path_factory.mktemp("metrics-listen") / "data", env) as srv:
        line = next(x for x in srv.stdout_lines if "metrics on" in x)
        match = re.search(r"Scribeline metrics on (http://127\.0\.0\.1:\d+)/metrics", line)
        assert match is not None, line
        async with aiohttp.ClientSession() as session:
            async with session.get(srv.base_url + "/metrics") as resp:
                assert resp.status == 404
            async with session.get(match.group(1) + "/metrics") as resp:
                assert resp.status == 401
            samples, _ = await scrape(session, match.group(1) + "/metrics")
            assert ("scribeline_websocket_connections", frozenset({("protocol", "events")})) in (
                samples
            )
            async with session.get(match.group(1) + "/v1/calls") as resp:
                assert resp.status == 404
    env = {"SCRIBELINE_METRICS_ENABLED": "false"}
    with running_server(tmp_path_factory.mktemp("metrics-off") / "data", env) as srv:
        async with aiohttp.ClientSession() as session, session.get(srv.base_url + "/metrics") as r:
            assert r.status == 404


def test_a_metrics_address_in_use_is_one_line_naming_its_setting(tmp_path: Path) -> None:
    """serve with SCRIBELINE_METRICS_LISTEN on a port another process holds exits 2
    with one line about the metrics address, not about the (free) public port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = scribeline(
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            extra_env={"SCRIBELINE_METRICS_LISTEN": f"127.0.0.1:{port}"},
        )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("scribeline: ")]
    assert errors == [
        f"scribeline: cannot serve metrics on 127.0.0.1:{port}: the port is in use;"
        " choose another SCRIBELINE_METRICS_LISTEN"
    ], result.stderr
