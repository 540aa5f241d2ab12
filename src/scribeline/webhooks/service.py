"""Webhook endpoints as the REST API changes and reads them.

A new endpoint's signing secret is returned once, at creation, and stored
sealed (``sealed``): it must be recoverable to sign, but a copy of the
database alone does not give it away. URLs are checked against ``ssrf`` when
set; deliveries check again at each connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scribeline.errors import InvalidRequest, NotFound
from scribeline.events import now_ms
from scribeline.sealed import SecretBox
from scribeline.storage import Storage
from scribeline.storage.base_webhooks import Delivery, Endpoint, EndpointChange, Replay
from scribeline.webhooks.deliverer import secret_context
from scribeline.webhooks.signing import new_secret
from scribeline.webhooks.ssrf import Refused, check_url

__all__ = ["MAX_REPLAY", "WebhookService"]

#: Deliveries one replay queues at most.
MAX_REPLAY = 10_000


class WebhookService:
    """Create, change, list and replay an organization's webhook endpoints."""

    def __init__(
        self,
        storage: Storage,
        box: SecretBox,
        *,
        allow_private: bool,
        max_endpoints: int,
        wake: Callable[[], None],
    ) -> None:
        self._storage = storage
        self._box = box
        self._allow = allow_private
        self._most = max_endpoints
        self._wake = wake

    def _url(self, url: str) -> str:
        try:
            return check_url(url, self._allow)
        except Refused as exc:
            raise InvalidRequest(f"url: {exc}") from None

    async def create(self, org_id: int, url: str, events: Sequence[str]) -> tuple[Endpoint, str]:
        """The new endpoint and its signing secret (shown once)."""
        secret = new_secret()
        sealed = self._box.seal(secret, secret_context(org_id))
        endpoint = await self._storage.create_webhook(
            org_id, self._url(url), list(events), sealed, self._most
        )
        return endpoint, secret

    async def endpoints(self, org_id: int) -> list[Endpoint]:
        return await self._storage.list_webhooks(org_id)

    async def get(self, org_id: int, endpoint_id: int) -> Endpoint:
        found = await self._storage.get_webhook(org_id, endpoint_id)
        if found is None:
            raise _not_found(endpoint_id)
        return found

    async def update(
        self,
        org_id: int,
        endpoint_id: int,
        url: str | None,
        events: Sequence[str] | None,
        enabled: bool | None,
    ) -> Endpoint:
        change = EndpointChange(
            None if url is None else self._url(url),
            None if events is None else tuple(events),
            enabled,
        )
        found = await self._storage.update_webhook(org_id, endpoint_id, change)
        if found is None:
            raise _not_found(endpoint_id)
        if enabled:
            self._wake()  # its waiting deliveries go now
        return found

    async def delete(self, org_id: int, endpoint_id: int) -> None:
        if not await self._storage.delete_webhook(org_id, endpoint_id):
            raise _not_found(endpoint_id)

    async def deliveries(
        self, org_id: int, endpoint_id: int, before: int | None, limit: int
    ) -> list[Delivery]:
        found = await self._storage.list_deliveries(org_id, endpoint_id, before, limit)
        if found is None:
            raise _not_found(endpoint_id)
        return found

    async def replay(self, org_id: int, endpoint_id: int, replay: Replay) -> int:
        """Queue delivered or given-up deliveries again; how many."""
        count = await self._storage.replay_deliveries(
            org_id, endpoint_id, replay, now_ms(), MAX_REPLAY
        )
        if count is None:
            raise _not_found(endpoint_id)
        if count:
            self._wake()
        return count


def _not_found(endpoint_id: int) -> NotFound:
    return NotFound(f"Webhook {endpoint_id} not found")
