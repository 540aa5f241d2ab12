"""The metrics module: label mappings, the plain counters the code keeps, and what
a scrape renders from them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scribeline.api.app import create_app
from scribeline.api.bot_streams import bot_producer, bot_subscriber
from scribeline.api.campaigns import campaign_progress
from scribeline.api.events import event_stream
from scribeline.api.live import live_transcript
from scribeline.api.media_stream import media_stream
from scribeline.api.producer import producer
from scribeline.broker import BrokerUnavailable
from scribeline.broker.memory import MemoryBroker
from scribeline.config import Settings
from scribeline.errors import (
    AuthenticationFailed,
    CallEnded,
    ConnectionLimit,
    HttpError,
    InternalError,
    InvalidCallSid,
    InvalidUpgrade,
    NotFound,
    RateLimited,
    StorageUnavailable,
)
from scribeline.events import StoredEvent, now_ms
from scribeline.hub import Hub
from scribeline.hub_channels import Topic
from scribeline.ingest.publish import Publisher
from scribeline.metrics import (
    PROTOCOLS,
    REASONS,
    ConnectionStats,
    FanOut,
    LoopHistogram,
    Metrics,
    protocol_of,
    refusal_reason,
    stream_kind,
)
from scribeline.protocols.frames import text_frame
from scribeline.registry import Registry

from .fake_socket import connection

WEBSOCKET_HANDLERS = {
    live_transcript,
    producer,
    media_stream,
    campaign_progress,
    event_stream,
    bot_subscriber,
    bot_producer,
}


def test_every_websocket_route_has_a_protocol_and_no_other_route_does() -> None:
    """The ``protocol`` label covers the application's WebSocket routes exactly."""
    app = create_app(cast(Any, SimpleNamespace(settings=Settings())))
    websocket_routes = {
        r.resource.canonical
        for r in app.router.routes()
        if r.resource is not None and r.handler in WEBSOCKET_HANDLERS
    }
    assert websocket_routes == set(PROTOCOLS)
    assert protocol_of("/v1/calls") == "other"


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (AuthenticationFailed(), "auth"),
        (NotFound("Call CA1 not found"), "not_found"),
        (InvalidCallSid(), "not_found"),
        (ConnectionLimit("Connection limit reached for this call"), "connection_limit"),
        (RateLimited("Too many messages"), "rate_limited"),
        (CallEnded("ended"), "ended"),
        (StorageUnavailable(), "unavailable"),
        (BrokerUnavailable("redis down"), "unavailable"),
        (HttpError(503, "The server is shutting down", "unavailable"), "unavailable"),
        (InvalidUpgrade("not an upgrade"), "invalid"),
        (ConnectionResetError("gone"), "disconnected"),
        (InternalError(), "internal"),
        (RuntimeError("a bug"), "internal"),
    ],
)
def test_refusal_reasons_come_from_one_fixed_set(exc: BaseException, reason: str) -> None:
    """Each error kind maps to a reason of ``REASONS``, whatever its message says."""
    assert refusal_reason(exc) == reason
    assert reason in REASONS


def test_stream_kinds_are_a_fixed_set() -> None:
    """A stream's id never reaches a label: only its kind, or ``other``."""
    assert [stream_kind(s) for s in ("call:17", "campaign:3", "bot:9", "org:1")] == [
        "call",
        "campaign",
        "bot",
        "org",
    ]
    assert stream_kind("bot-actions:9") == "other"
    assert stream_kind("CA0123456789") == "other"


def test_connection_stats_count_joins_refusals_and_slow_closes() -> None:
    stats = ConnectionStats()
    stats.joined("live_transcript")
    stats.joined("live_transcript", AuthenticationFailed())
    stats.refused("events", RateLimited("Too many"))
    stats.slow("live_transcript")
    assert stats.connects == {"live_transcript": 1}
    assert stats.refusals == {("live_transcript", "auth"): 1, ("events", "rate_limited"): 1}
    assert stats.slow_closes == {"live_transcript": 1}


async def test_a_slow_consumer_close_is_counted_once_under_its_protocol() -> None:
    """A subscriber past its send buffer is closed with 1013 and counted once,
    however many more events are offered to it while it closes."""
    registry = Registry(20, 20)
    conn, socket = connection(registry, limit=4096, kind="live_transcript")
    socket.buffered = 10_000  # the client stopped reading
    conn.offer(1, text_frame(b"{}"), False)
    conn.offer(2, text_frame(b"{}"), False)
    assert socket.close_frames[0][0] == 1013
    assert registry.stats.slow_closes == {"live_transcript": 1}
    assert registry.protocols() == {"live_transcript": 1}


def test_fan_out_counts_frames_and_times_each_event_once() -> None:
    """Frames are added per event; the latency histogram gets one sample per event
    that reached someone, none for unstored messages."""
    latency = LoopHistogram((0.01, 1.0))
    fan_out = FanOut(latency)
    fan_out.offered("stream", 1000, now_ms() - 20)
    fan_out.offered("stream", 0, now_ms())
    fan_out.offered("relay", 3)
    assert fan_out.events == {"stream": 2, "organization": 0, "relay": 1}
    assert fan_out.frames == {"stream": 1000, "organization": 0, "relay": 3}
    assert latency.counts == [0, 1, 0]
    assert 0.015 <= latency.sum < 1


def test_loop_histogram_renders_cumulative_buckets() -> None:
    """A value equal to a bound counts in that bound's bucket (``le``); buckets add up."""
    histogram = LoopHistogram((0.1, 1.0))
    for value in (0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    samples = {
        (s.name, s.labels.get("le")): s.value for s in histogram.family("x_seconds", "x").samples
    }
    assert samples[("x_seconds_bucket", "0.1")] == 1
    assert samples[("x_seconds_bucket", "1.0")] == 3
    assert samples[("x_seconds_bucket", "+Inf")] == 4
    assert samples[("x_seconds_count", None)] == 4
    assert samples[("x_seconds_sum", None)] == 8.6


async def test_a_topic_counts_what_it_offers() -> None:
    """A topic's fan-out adds the subscribers of every format that renders the event."""
    fan_out = FanOut()
    topic = Topic("call:1", fan_out)
    conns = [connection()[0] for _ in range(3)]
    topic.add(conns[0], "a", lambda e: b"{}")
    topic.add(conns[1], "a", lambda e: b"{}")
    topic.add(conns[2], "b", lambda e: None)  # this format does not show the event
    topic.dispatch(StoredEvent("call:1", 1, "transcript", now_ms(), {}))
    assert fan_out.frames["stream"] == 2


async def test_a_scrape_renders_the_services_counters_with_fixed_labels_only() -> None:
    """Two servers' metrics in one process stay apart, and a scrape shows what the
    services counted, every label value from a fixed set."""
    first, second = Metrics(), Metrics()
    services = _services()
    first.watch(cast(Any, services))
    second.watch(cast(Any, _services()))
    registry: Registry = services.registry
    registry.stats.joined("live_transcript")
    registry.stats.joined("events", NotFound("Call CA0123 not found"))
    publisher: Publisher = services.publisher
    await publisher.publish(7, [StoredEvent("call:12", 1, "transcript", now_ms(), {})], {})
    first.committed(3, 0.002)

    samples = _samples(first.render())
    assert ({"protocol": "live_transcript"}, 1.0) in samples["scribeline_websocket_connects_total"]
    assert samples["scribeline_websocket_refusals_total"] == [
        ({"protocol": "events", "reason": "not_found"}, 1.0)
    ]
    assert ({"kind": "call"}, 1.0) in samples["scribeline_events_stored_total"]
    assert ({"kind": "org"}, 1.0) in samples["scribeline_events_published_total"]
    assert samples["scribeline_storage_commit_batch_size_sum"] == [({}, 3.0)]
    assert samples["scribeline_broker_reconnects_total"] == [({}, 0.0)]
    labels = {
        k: v for series in samples.values() for labels, _ in series for k, v in labels.items()
    }
    allowed = {
        "protocol": set(PROTOCOLS.values()),
        "reason": set(REASONS),
        "kind": {"call", "campaign", "bot", "org", "final", "partial"},
        "channel": {"stream", "organization", "relay"},
        "le": None,
    }
    for name, value in labels.items():
        assert name in allowed, name
        assert allowed[name] is None or value in cast(set[str], allowed[name]), (name, value)
    other = _samples(second.render())
    assert other["scribeline_websocket_connects_total"] == [
        ({"protocol": p}, 0.0) for p in sorted(set(PROTOCOLS.values()))
    ]


def _services() -> SimpleNamespace:
    broker = MemoryBroker()
    storage = SimpleNamespace(observe_commits=lambda hook: None)
    return SimpleNamespace(
        registry=Registry(20, 20),
        hub=Hub(broker, cast(Any, storage), lambda e, m: None),
        publisher=Publisher(broker),
        broker=broker,
        storage=storage,
        media=SimpleNamespace(local=None),
    )


def _samples(text: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out
