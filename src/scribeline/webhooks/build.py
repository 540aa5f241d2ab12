"""A node's webhook service and deliverer, from the settings."""

from __future__ import annotations

from scribeline.config import Settings
from scribeline.sealed import SecretBox
from scribeline.storage import Storage
from scribeline.webhooks.deliverer import Deliverer
from scribeline.webhooks.policy import Policy
from scribeline.webhooks.sender import Sender
from scribeline.webhooks.service import WebhookService

__all__ = ["build_webhooks", "policy_of"]


def policy_of(settings: Settings) -> Policy:
    return Policy(
        base_ms=round(settings.webhook_backoff * 1000),
        cap_ms=round(settings.webhook_backoff_max * 1000),
        window_ms=round(settings.webhook_retry_window * 1000),
        disable_after_ms=round(settings.webhook_disable_after * 1000),
    )


def build_webhooks(
    storage: Storage, box: SecretBox, settings: Settings
) -> tuple[WebhookService, Deliverer]:
    """The REST side and the deliverer (not started: ``Deliverer.start``)."""
    sender = Sender(
        settings.webhook_allow_private, settings.webhook_timeout, settings.webhook_concurrency
    )
    deliverer = Deliverer(
        storage,
        box,
        sender,
        policy_of(settings),
        lease=settings.webhook_lease,
        poll=settings.webhook_poll_interval,
        concurrency=settings.webhook_concurrency,
        keep_days=settings.webhook_log_days,
    )
    service = WebhookService(
        storage,
        box,
        allow_private=settings.webhook_allow_private,
        max_endpoints=settings.webhook_max_endpoints,
        wake=deliverer.wake,
    )
    return service, deliverer
