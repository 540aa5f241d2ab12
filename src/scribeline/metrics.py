"""Prometheus metrics: every metric of a server is defined here, once.

The code that does the work keeps plain counters (the registry of WebSockets,
the hub's fan-out, the publisher, the broker, the speech engine) and
:class:`Metrics` reads them when ``/metrics`` is scraped, through a custom
collector: a delivery costs no more than an integer addition, counted once
per event fanned out rather than once per subscriber. Histograms are
observed once per event fanned out, per storage commit and per speech
decode, never per delivery.

Each server has a registry of its own (no process-wide state), so two servers
in one process do not collide. Label values come from small fixed sets (a
protocol, a refusal reason, a stream kind, a channel): never a call SID, an
organization, a key or any other value a client chooses.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from scribeline.broker import BrokerUnavailable
from scribeline.errors import (
    AuthenticationFailed,
    BrokerUnreachable,
    Conflict,
    ConnectionLimit,
    Forbidden,
    HttpError,
    InvalidCallSid,
    InvalidJson,
    InvalidMessage,
    InvalidRequest,
    InvalidUpgrade,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Replaced,
    RequestTimeout,
    StorageUnavailable,
    StreamClosed,
    TranscriptionDisabled,
    TranscriptionUnavailable,
)

if TYPE_CHECKING:
    from scribeline.api.state import Services

__all__ = [
    "PROTOCOLS",
    "REASONS",
    "STREAM_KINDS",
    "ConnectionStats",
    "FanOut",
    "LoopHistogram",
    "Metrics",
    "protocol_of",
    "refusal_reason",
    "stream_kind",
]

#: The WebSocket protocol each WebSocket route speaks (the ``protocol`` label).
PROTOCOLS: dict[str, str] = {
    "/live-transcript/{call_sid}": "live_transcript",
    "/v1/events": "events",
    "/ws/campaigns/{campaign_id}/progress": "campaign_progress",
    "/v1/bots/{bot_id}/ws": "bot_subscriber",
    "/v1/bots/{bot_id}/producer": "bot_producer",
    "/v1/ingest/{call_sid}": "producer",
    "/v1/media-stream": "media_stream",
    "/v1/media-stream/{token}": "media_stream",
}

#: Why a WebSocket was refused (the ``reason`` label), by the error it was told
#: about: the first class that matches.
_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (AuthenticationFailed, "auth"),
    (Forbidden, "forbidden"),
    (NotFound, "not_found"),
    (InvalidCallSid, "not_found"),
    (ConnectionLimit, "connection_limit"),
    (RateLimited, "rate_limited"),
    (StreamClosed, "ended"),
    (TranscriptionDisabled, "transcription_disabled"),
    (TranscriptionUnavailable, "unavailable"),
    (StorageUnavailable, "unavailable"),
    (BrokerUnreachable, "unavailable"),
    (BrokerUnavailable, "unavailable"),
    (Conflict, "conflict"),
    (Replaced, "conflict"),
    (InvalidUpgrade, "invalid"),
    (InvalidRequest, "invalid"),
    (InvalidMessage, "invalid"),
    (InvalidJson, "invalid"),
    (PayloadTooLarge, "invalid"),
    (RequestTimeout, "invalid"),
    (ConnectionError, "disconnected"),  # the client went away during its join
)
#: Every value of the ``reason`` label.
REASONS: tuple[str, ...] = (*dict.fromkeys(r for _, r in _REASONS), "internal")

#: Stream kinds (the ``kind`` label): ``call:17`` is a call's stream, ``org:3``
#: an organization's channel. Anything else counts as ``other``.
STREAM_KINDS: frozenset[str] = frozenset({"call", "campaign", "bot", "org"})

#: Histogram buckets, in seconds or writes.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_DECODE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def protocol_of(route: str) -> str:
    """The ``protocol`` label of a WebSocket route (its canonical path)."""
    return PROTOCOLS.get(route, "other")


def refusal_reason(exc: BaseException) -> str:
    """The ``reason`` label of a refused WebSocket: one of :data:`REASONS`."""
    if isinstance(exc, HttpError):  # the shutting-down 503, a route's own refusal
        return "unavailable" if exc.http_status == 503 else "invalid"
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "internal"


def stream_kind(name: str) -> str:
    """The ``kind`` label of a stream or channel name (``call:17`` -> ``call``)."""
    prefix = name.partition(":")[0]
    return prefix if prefix in STREAM_KINDS else "other"


class ConnectionStats:
    """What happened to WebSockets, by protocol: plain counters the registry keeps."""

    __slots__ = ("connects", "refusals", "slow_closes")

    def __init__(self) -> None:
        self.connects: Counter[str] = Counter()
        self.refusals: Counter[tuple[str, str]] = Counter()
        self.slow_closes: Counter[str] = Counter()

    def joined(self, protocol: str, exc: BaseException | None = None) -> None:
        """A join ended: the connection is served (``exc`` None) or refused."""
        if exc is None:
            self.connects[protocol] += 1
        else:
            self.refused(protocol, exc)

    def refused(self, protocol: str, exc: BaseException) -> None:
        self.refusals[protocol, refusal_reason(exc)] += 1

    def slow(self, protocol: str) -> None:
        """A subscriber fell too far behind and was closed with 1013."""
        self.slow_closes[protocol] += 1


class LoopHistogram:
    """A histogram observed on the event loop's thread only: a bucket index and two
    additions per sample, no lock (``prometheus_client``'s takes one per counter),
    made cumulative when scraped."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        buckets, total = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, float(total)))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


class FanOut:
    """Frames offered to subscribers, by kind of channel, and the age of events
    when they are fanned out.

    Called once per event (or relayed message) with how many subscribers were
    offered it: the hot path adds integers and, with ``latency`` set, reads the
    clock and observes one histogram sample per event, none per delivery.
    """

    __slots__ = ("events", "frames", "latency")

    def __init__(self, latency: LoopHistogram | None = None) -> None:
        #: Channel kind (``stream``, ``organization``, ``relay``) -> count.
        self.events: dict[str, int] = {"stream": 0, "organization": 0, "relay": 0}
        self.frames: dict[str, int] = {"stream": 0, "organization": 0, "relay": 0}
        #: Seconds from an event's timestamp to its fan-out here (None: not kept).
        self.latency = latency

    def offered(self, channel: str, frames: int, ts_ms: int = 0) -> None:
        """An event (``ts_ms``: its timestamp; 0 for an unstored message) went to
        ``frames`` subscribers of a ``channel`` kind of channel."""
        self.events[channel] += 1
        self.frames[channel] += frames
        latency = self.latency
        if latency is not None and ts_ms and frames:
            latency.observe(max(0.0, time.time() - ts_ms / 1000))


class Metrics:
    """The metrics of one server: its own registry, the histograms the code
    observes, and a collector that reads the services' counters at each scrape."""

    def __init__(self) -> None:
        # No ``_created`` series (process-wide in the library; nothing else here
        # exports metrics): every counter starts with the process.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        #: Observed once per event fanned out: the cheapest kind (read by the collector).
        self.delivery_latency = LoopHistogram(_LATENCY_BUCKETS)
        self.commit_seconds = Histogram(
            "scribeline_storage_commit_seconds",
            "Seconds the storage writer took to commit one batch of writes",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.commit_batch = Histogram(
            "scribeline_storage_commit_batch_size",
            "Writes committed together in one transaction",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.decode_seconds = Histogram(
            "scribeline_speech_decode_seconds",
            "Seconds one decode of the local speech engine took",
            ["kind"],
            buckets=_DECODE_BUCKETS,
            registry=r,
        )
        for kind in ("final", "partial"):  # every series exists from the start, at 0
            self.decode_seconds.labels(kind)

    def watch(self, services: Services) -> None:
        """Read ``services``' counters at every scrape; time their fan-outs,
        storage commits and speech decodes."""
        services.hub.fan_out.latency = self.delivery_latency
        services.storage.observe_commits(self.committed)
        if services.media.local is not None:
            services.media.local.on_decode = self.decoded
        self.registry.register(_ServicesCollector(services, self.delivery_latency))

    def committed(self, writes: int, seconds: float) -> None:
        """The storage writer committed a batch of ``writes`` in ``seconds``."""
        self.commit_seconds.observe(seconds)
        self.commit_batch.observe(writes)

    def decoded(self, final: bool, seconds: float) -> None:
        """The local speech engine decoded a final (or a partial) in ``seconds``."""
        self.decode_seconds.labels("final" if final else "partial").observe(seconds)

    def render(self) -> bytes:
        """Every metric in Prometheus's text format (version 0.0.4)."""
        return generate_latest(self.registry)


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class _ServicesCollector(Collector):
    """Turns the services' plain counters into metrics, at scrape time (on the
    event loop's thread, like every counter it reads)."""

    def __init__(self, services: Services, latency: LoopHistogram) -> None:
        self._services = services
        self._latency = latency

    def collect(self) -> Iterator[Metric]:
        yield from self._connections()
        yield self._latency.family(
            "scribeline_delivery_latency_seconds",
            "Seconds from an event's timestamp (taken at its append) to its fan-out on"
            " this node, once per event fanned out",
        )
        yield from self._events()
        yield from self._broker()
        yield from self._speech()

    def _connections(self) -> Iterator[Metric]:
        registry = self._services.registry
        stats = registry.stats
        protocols = sorted(set(PROTOCOLS.values()))
        open_ = _gauge(
            "scribeline_websocket_connections", "Open WebSocket connections", ["protocol"]
        )
        counts = registry.protocols()
        for protocol in protocols:
            open_.add_metric([protocol], counts.get(protocol, 0))
        yield open_
        connects = _counter(
            "scribeline_websocket_connects",
            "WebSocket connections that joined their stream",
            ["protocol"],
        )
        for protocol in protocols:
            connects.add_metric([protocol], stats.connects.get(protocol, 0))
        yield connects
        refusals = _counter(
            "scribeline_websocket_refusals",
            "WebSocket connections refused, by reason",
            ["protocol", "reason"],
        )
        for (protocol, reason), count in sorted(stats.refusals.items()):
            refusals.add_metric([protocol, reason], count)
        yield refusals
        slow = _counter(
            "scribeline_websocket_slow_consumer_closes",
            "Subscribers closed with 1013 for falling too far behind",
            ["protocol"],
        )
        for protocol in protocols:
            slow.add_metric([protocol], stats.slow_closes.get(protocol, 0))
        yield slow

    def _events(self) -> Iterator[Metric]:
        publisher, hub = self._services.publisher, self._services.hub
        stored = _counter("scribeline_events_stored", "Events stored, by stream kind", ["kind"])
        for kind in ("call", "campaign", "bot"):
            stored.add_metric([kind], publisher.stored.get(kind, 0))
        yield stored
        published = _counter(
            "scribeline_events_published",
            "Event messages handed to the broker, by channel kind",
            ["kind"],
        )
        for kind in ("call", "campaign", "bot", "org"):
            published.add_metric([kind], publisher.published.get(kind, 0))
        yield published
        yield CounterMetricFamily(
            "scribeline_publish_failures",
            "Broker round trips of the publisher that failed (the events stay stored)",
            value=publisher.failures,
        )
        yield CounterMetricFamily(
            "scribeline_publish_dropped",
            "Messages the publisher gave up on (nodes read those events from storage)",
            value=publisher.dropped,
        )
        fan_out = hub.fan_out
        events = _counter(
            "scribeline_fanouts", "Events fanned out to local subscribers", ["channel"]
        )
        frames = _counter(
            "scribeline_deliveries", "Frames offered to local subscribers", ["channel"]
        )
        for channel in ("stream", "organization", "relay"):
            events.add_metric([channel], fan_out.events[channel])
            frames.add_metric([channel], fan_out.frames[channel])
        yield events
        yield frames
        counters = hub.counters()
        yield CounterMetricFamily(
            "scribeline_stream_gaps",
            "Gaps found in followed streams (a later seq came first, or storage was ahead)",
            value=counters["gaps"],
        )
        yield CounterMetricFamily(
            "scribeline_stream_repairs",
            "Reads from storage that filled a gap in a followed stream",
            value=counters["repairs"],
        )
        yield CounterMetricFamily(
            "scribeline_position_checks",
            "Checks of every followed stream's position against storage",
            value=counters["position_checks"],
        )

    def _broker(self) -> Iterator[Metric]:
        counters = self._services.broker.counters()
        for key, name, doc in (
            ("reconnects", "reconnects", "Reconnects of the broker's pub/sub connection"),
            ("stale", "stale_connections", "Pub/sub connections replaced after a failed probe"),
            ("dropped", "dropped_messages", "Messages dropped by a full broker inbox"),
        ):
            yield CounterMetricFamily(f"scribeline_broker_{name}", doc, value=counters.get(key, 0))

    def _speech(self) -> Iterator[Metric]:
        engine = self._services.media.local
        if engine is None:
            return
        yield GaugeMetricFamily(
            "scribeline_speech_queue_depth",
            "Finals waiting for a decode worker of the local speech engine",
            value=engine.queue_depth,
        )
        yield GaugeMetricFamily(
            "scribeline_speech_busy_workers",
            "Decode workers of the local speech engine running a decode",
            value=engine.busy_workers,
        )
        yield GaugeMetricFamily(
            "scribeline_speech_open_tracks",
            "Audio tracks the local speech engine transcribes",
            value=engine.open_tracks,
        )
