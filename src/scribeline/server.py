"""Running the server: build the services, listen, stop cleanly on SIGTERM.

Stopping closes every WebSocket with 1001 (clients reconnect with ``since``),
lets in-flight requests finish, then flushes storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from scribeline import logs
from scribeline.alerts.service import AlertService
from scribeline.api.app import AccessLogger, create_app
from scribeline.api.http import Runner
from scribeline.api.metrics import serve_metrics
from scribeline.api.state import Services
from scribeline.auth import Authenticator
from scribeline.broker import open_broker
from scribeline.cluster import Signals, check, open_cluster
from scribeline.config import Settings
from scribeline.hub import Hub
from scribeline.ingest.assistants import AssistantService
from scribeline.ingest.bots import BotService
from scribeline.ingest.calls import CallService
from scribeline.ingest.campaigns import CampaignService
from scribeline.ingest.organization import OrganizationService
from scribeline.ingest.publish import Publisher
from scribeline.metrics import Metrics
from scribeline.protocols import org_events
from scribeline.readiness import Probe, Readiness, soft
from scribeline.registry import Registry
from scribeline.retention import RetentionSweeper
from scribeline.sealed import SecretBox
from scribeline.sessions import SessionService
from scribeline.speech.media import build_media
from scribeline.speech.settings import SpeechSettingsService
from scribeline.storage import open_storage
from scribeline.tokens import load_or_create_secret
from scribeline.webhooks.build import build_webhooks

#: A start-up hook, given the running server (the demo is one).
StartHook = Callable[["Running"], Coroutine[Any, Any, None]]

__all__ = ["Running", "build_services", "serve"]

log = logging.getLogger(__name__)


async def build_services(settings: Settings) -> Services:
    secret = load_or_create_secret(settings)  # first: a bad secret stops start-up cleanly
    storage = await open_storage(settings.database_url, settings.data_dir)
    broker = open_broker(
        settings.broker_url,
        probe_interval=settings.broker_probe_interval,
        timeout=settings.broker_timeout,
    )
    hub = Hub(
        broker,
        storage,
        org_events.encode_event,
        subscriptions_per_connection=settings.max_subscriptions_per_connection,
        subscriptions_per_organization=settings.max_subscriptions_per_organization,
        reorder_wait=settings.reorder_wait,
        position_check_interval=settings.position_check_interval,
    )
    await broker.start(hub.deliver, hub.on_gap)
    hub.start()
    # Cluster-wide limits, claims, turns and notices share the broker's Redis.
    cluster = open_cluster(
        settings.broker_url,
        lease=settings.cluster_lease,
        renew=settings.cluster_renew_interval,
        timeout=settings.broker_timeout,
        probe=settings.broker_probe_interval,
    )
    signals = Signals(cluster)
    registry = Registry(settings.ping_interval, settings.ping_timeout, cluster)
    publisher = Publisher(broker)
    campaigns = CampaignService(storage, publisher, settings.campaign_progress_interval, cluster)

    async def cluster_check() -> str | None:
        return await check(cluster, settings.readiness_timeout / 2)

    probes: dict[str, Probe] = {"storage": storage.ping, "broker": broker.ping}
    if not settings.broker_url.startswith("memory://"):
        # Without Redis a node still stores and serves (gaps are read from storage,
        # limits count per node): degraded, not unavailable (docs/deployment.md).
        probes["broker"] = soft(broker.ping, settings.readiness_timeout / 2)
        probes["cluster"] = cluster_check
    auth = Authenticator(
        storage,
        secret,
        settings.auth_cache_seconds,
        signals=signals,
        on_revoked=registry.close_key,  # a revoked key's open sockets close on every node
    )
    # A deleted call's subscribers are closed on every node (``CALL_DELETED``).
    # Finals are checked against the organization's alert rules once stored.
    alerts = AlertService(storage, publisher, signals)
    organization = OrganizationService(storage, signals)
    calls = CallService(
        storage,
        publisher,
        campaigns,
        signals,
        on_deleted=hub.close_stream,
        on_stored=alerts.evaluate,
        redaction=organization.redaction_for,
    )
    assistants = AssistantService(storage)
    speech = SpeechSettingsService(storage, SecretBox(secret), signals)
    webhooks, deliverer = build_webhooks(storage, SecretBox(secret), settings)
    services = Services(
        settings=settings,
        storage=storage,
        broker=broker,
        hub=hub,
        registry=registry,
        auth=auth,
        calls=calls,
        alerts=alerts,
        webhooks=webhooks,
        deliverer=deliverer,
        campaigns=campaigns,
        bots=BotService(
            storage,
            broker,
            publisher,
            settings.bot_stop_timeout,
            signals,
            redaction=organization.org_redaction,
        ),
        organization=organization,
        readiness=Readiness(probes, settings.readiness_timeout),
        assistants=assistants,
        signals=signals,
        publisher=publisher,
        speech=speech,
        media=build_media(settings, auth, speech, calls, assistants, cluster),
        sessions=SessionService(
            storage,
            auth,
            signals,
            code_ttl=settings.dashboard_code_ttl,
            session_ttl=settings.dashboard_session_ttl,
            captions_ttl=settings.captions_ttl,
        ),
        metrics=Metrics() if settings.metrics_enabled else None,
        retention=RetentionSweeper(storage, settings.retention_interval),
    )
    if services.metrics is not None:
        services.metrics.watch(services)
    await cluster.start(signals.deliver)  # after every service said what it listens to
    return services


@dataclass(frozen=True, slots=True)
class Running:
    """A started server, handed to start-up hooks (the demo)."""

    services: Services
    base_url: str
    stopping: asyncio.Event


async def serve(settings: Settings, on_started: StartHook | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    services = await build_services(settings)
    app = create_app(services)
    runner = Runner(
        app,
        header_timeout=settings.http_header_timeout,
        keepalive_timeout=settings.http_keepalive_timeout,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("scribeline.access") if settings.access_log else None,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(
        runner, settings.host, settings.port, backlog=4096, reuse_port=settings.reuse_port or None
    )
    metrics_runner: web.AppRunner | None = None
    try:
        await site.start()
        metrics_runner = await serve_metrics(services)  # on an address of its own, if set
    except BaseException:
        # The address is taken or not ours: release what start-up opened (the
        # storage writer first of all) before the error reaches the command.
        await runner.cleanup()
        await _close_services(services)
        raise
    host, port = runner.addresses[0][:2]
    base_url = f"http://{host}:{port}"
    # A revocation this node missed (no notice) closes sockets within the cache time.
    services.registry.start(services.auth.inactive_keys, max(settings.auth_cache_seconds, 1.0))
    services.deliverer.start()  # every node sends webhooks; the outbox says which
    if services.retention is not None:
        services.retention.start()

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    print(f"Scribeline listening on {base_url}", flush=True)
    hook: asyncio.Task[None] | None = None
    if on_started is not None:
        hook = loop.create_task(on_started(Running(services, base_url, stopping)))

    # Objects alive after start-up are long-lived: keep them out of GC scans (p99).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)

    await stopping.wait()
    log.info("stopping: closing streams with 1001 and draining")
    if hook is not None:
        # The hook sees ``stopping`` too and winds down (the demo completes its calls).
        done, _ = await asyncio.wait([hook], timeout=settings.shutdown_timeout)
        if not done:
            hook.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hook
    await runner.cleanup()  # closes listeners, runs on_shutdown (1001), drains handlers
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await _close_services(services)
    log.info("stopped")


async def _close_services(services: Services) -> None:
    # Media streams still ending store their last finals (storage is still open),
    # then the engines and their decode workers go.
    if services.retention is not None:
        await services.retention.close()
    await services.deliverer.stop()  # no new deliveries; those in flight go on
    await services.media.close(services.settings.media_finish_timeout)
    await services.campaigns.close()
    await services.bots.close()
    await services.publisher.close()  # after the services that publish, before the broker
    await services.signals.close()
    await services.signals.cluster.close()  # gives back this node's slots and claims now
    await services.hub.close()
    await services.broker.close()
    await services.deliverer.close()  # attempts in flight record their outcome first
    await services.storage.close()


def run(settings: Settings, on_started: StartHook | None = None) -> int:
    """Run :func:`serve` on uvloop; the process exit status."""
    logs.configure(settings.log_level, log_format=settings.log_format)
    import uvloop

    uvloop.run(serve(settings, on_started))
    return 0
