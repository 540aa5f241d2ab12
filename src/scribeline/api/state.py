"""What the request handlers share, held on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from scribeline.alerts.service import AlertService
from scribeline.auth import Authenticator
from scribeline.broker import Broker
from scribeline.cluster import Signals
from scribeline.config import Settings
from scribeline.hub import Hub
from scribeline.ingest.assistants import AssistantService
from scribeline.ingest.bots import BotService
from scribeline.ingest.calls import CallService
from scribeline.ingest.campaigns import CampaignService
from scribeline.ingest.organization import OrganizationService
from scribeline.ingest.publish import Publisher
from scribeline.metrics import Metrics
from scribeline.readiness import Readiness
from scribeline.registry import Registry
from scribeline.retention import RetentionSweeper
from scribeline.sessions import SessionService
from scribeline.speech.media import Media
from scribeline.speech.settings import SpeechSettingsService
from scribeline.storage import Storage
from scribeline.webhooks.deliverer import Deliverer
from scribeline.webhooks.service import WebhookService

__all__ = ["SERVICES", "Services"]


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    storage: Storage
    broker: Broker
    hub: Hub
    registry: Registry
    auth: Authenticator
    calls: CallService
    campaigns: CampaignService
    bots: BotService
    readiness: Readiness
    assistants: AssistantService
    #: Notices and requests between nodes; ``signals.cluster`` is this node's cluster.
    signals: Signals
    #: Publishes stored events (closed after the services that publish).
    publisher: Publisher
    #: Organizations' speech settings (engine choice, sealed secrets).
    speech: SpeechSettingsService
    #: Live audio: media streams and their speech engines.
    media: Media
    #: Dashboard sign-in: codes, sessions, their access and captions tokens.
    sessions: SessionService
    #: Organizations' alert rules, checked against every stored final.
    alerts: AlertService
    #: Organizations' settings (PII redaction, retention).
    organization: OrganizationService
    #: Organizations' webhook endpoints (the REST side).
    webhooks: WebhookService
    #: Sends what the webhook outbox holds (started by ``serve``).
    deliverer: Deliverer
    #: Prometheus metrics (None when ``metrics_enabled`` is off).
    metrics: Metrics | None = None
    #: Deletes what outlived its organization's retention (started by ``serve``).
    retention: RetentionSweeper | None = None


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
