"""The webhook store: endpoints, the outbox and the delivery log.

Contract (``tests/contract/test_webhook_outbox.py`` checks it on every backend):

* **Transactional outbox.** An append that stores a webhook event
  (``webhooks.types.webhook_type``) writes one outbox row per enabled endpoint
  of the stream's organization subscribed to its type, in the append's own
  transaction: committed together or not at all.
* **One attempt in flight per row.** ``claim_deliveries`` moves due rows to
  ``sending`` under a lease (``lease_until``) and a fencing token; a row is
  claimable again only once its lease has expired (its node died). A finish
  whose token is no longer the row's changes nothing but the log. On
  PostgreSQL claims take ``FOR UPDATE SKIP LOCKED``, so nodes that claim at the
  same moment share the rows, never one row.
* **Order per call.** Of the open rows (``pending`` or ``sending``) of one
  endpoint and one stream, only the oldest (by seq, then id) is claimable: an
  event of a call is sent after the one before it was delivered or gave up.
* Rows of disabled endpoints are not claimed; they wait for it to be enabled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Attempt",
    "Claim",
    "Delivery",
    "Endpoint",
    "EndpointChange",
    "Finish",
    "Replay",
    "WebhookStore",
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An organization's webhook endpoint (its secret sealed)."""

    id: int
    org_id: int
    url: str
    events: tuple[str, ...]
    secret_sealed: bytes
    enabled: bool
    disabled_reason: str | None
    failing_since: int | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """Fields to change (None: kept). Enabling clears the reason and the failures."""

    url: str | None = None
    events: tuple[str, ...] | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """An outbox row claimed for one attempt, with what sending it needs.

    ``stored`` is the stored event's (type, ts, data) and ``subject`` what names
    its call, bot or campaign (a call SID, a bot's id); None when it is gone."""

    id: int
    endpoint_id: int
    url: str
    secret_sealed: bytes
    org_id: int
    stream: str
    seq: int
    event_type: str
    attempts: int
    created_at: int
    token: str
    stored: tuple[str, int, dict[str, Any]] | None
    subject: str | None


@dataclass(frozen=True, slots=True)
class Finish:
    """The outcome of one attempt. ``retry_at`` None and not ``delivered``: dead."""

    outbox_id: int
    endpoint_id: int
    token: str
    at: int
    duration_ms: int
    status: int | None
    error: str | None
    delivered: bool
    retry_at: int | None


@dataclass(frozen=True, slots=True)
class Attempt:
    at: int
    status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox row as the delivery log shows it, with its attempts (oldest first)."""

    id: int
    stream: str
    seq: int
    event_type: str
    state: str
    attempts: int
    next_attempt_at: int | None
    created_at: int
    delivered_at: int | None
    log: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class Replay:
    """Deliveries to send again: these ids, or those created in ``[since, until)``."""

    ids: tuple[int, ...] = ()
    since: int | None = None
    until: int | None = None


class WebhookStore(ABC):
    """Webhook endpoints and their outbox (see the module's contract)."""

    @abstractmethod
    async def create_webhook(
        self, org_id: int, url: str, events: Sequence[str], secret_sealed: bytes, most: int
    ) -> Endpoint:
        """Add an enabled endpoint; ``Conflict`` if the organization has ``most``."""

    @abstractmethod
    async def list_webhooks(self, org_id: int) -> list[Endpoint]: ...

    @abstractmethod
    async def get_webhook(self, org_id: int, endpoint_id: int) -> Endpoint | None: ...

    @abstractmethod
    async def update_webhook(
        self, org_id: int, endpoint_id: int, change: EndpointChange
    ) -> Endpoint | None: ...

    @abstractmethod
    async def delete_webhook(self, org_id: int, endpoint_id: int) -> bool:
        """Delete the endpoint, its outbox rows and their log."""

    @abstractmethod
    async def claim_deliveries(
        self, now: int, lease_ms: int, token: str, limit: int
    ) -> list[Claim]:
        """Claim up to ``limit`` due rows until ``now + lease_ms`` under ``token``."""

    @abstractmethod
    async def finish_delivery(self, finish: Finish, disable_after_ms: int) -> bool:
        """Log the attempt; if the row is still held by ``finish.token``, settle it
        (delivered, pending until ``retry_at``, or dead) and keep the endpoint's
        failure time. True if a death disabled the endpoint (failing for at least
        ``disable_after_ms``)."""

    @abstractmethod
    async def list_deliveries(
        self, org_id: int, endpoint_id: int, before: int | None, limit: int
    ) -> list[Delivery] | None:
        """The endpoint's deliveries, newest first, ids below ``before`` (None: no
        such endpoint)."""

    @abstractmethod
    async def replay_deliveries(
        self, org_id: int, endpoint_id: int, replay: Replay, now: int, most: int
    ) -> int | None:
        """Queue again (new pending rows, due ``now``) up to ``most`` delivered or
        dead deliveries; how many (None: no such endpoint)."""

    @abstractmethod
    async def purge_deliveries(self, before: int) -> int:
        """Delete delivered and dead rows (and their log) created before ``before``,
        at most ``webhook_sql.PURGE_BATCH`` of them; how many."""
