"""``/v1/webhooks``: an organization's signed webhook endpoints (docs/protocol.md,
"Webhooks"). ``admin`` changes them, ``read`` looks; the signing secret is in
the answer to the ``POST`` only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from scribeline.api.params import path_id, query_int
from scribeline.api.rest import authorize_org, json_response, read_json
from scribeline.events import format_ms
from scribeline.ingest.models import STRICT, Id
from scribeline.storage.base_webhooks import Delivery, Endpoint, Replay
from scribeline.webhooks.ssrf import MAX_URL
from scribeline.webhooks.types import message_id

__all__ = [
    "DEFAULT_DELIVERIES",
    "MAX_DELIVERIES",
    "MAX_REPLAY_IDS",
    "CreateWebhook",
    "ReplayWebhook",
    "UpdateWebhook",
    "routes",
]

routes = web.RouteTableDef()

#: Deliveries in one page of the log: by default and at most.
DEFAULT_DELIVERIES = 50
MAX_DELIVERIES = 200
#: Deliveries one replay may name.
MAX_REPLAY_IDS = 100

EventName = Literal[
    "call.started", "call.ended", "transcript.final", "alert", "campaign.completed", "bot.stopped"
]
Events = Annotated[list[EventName], Field(min_length=1, max_length=6)]
#: No control characters or spaces (NUL cannot be stored on PostgreSQL; the rest
#: have no place in a URL).
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL, pattern=r"^[^\x00-\x20\x7f]+$")]
#: ISO 8601 UTC with a ``Z``, to the second or finer.
Instant = Annotated[
    str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$", max_length=40)
]


class CreateWebhook(BaseModel):
    """A new endpoint: where, and which event types."""

    model_config = STRICT

    url: Url
    events: Events


class UpdateWebhook(BaseModel):
    """A change; absent fields stay. ``enabled: true`` turns a disabled endpoint on."""

    model_config = STRICT

    url: Url | None = None
    events: Events | None = None
    enabled: bool | None = None


class ReplayWebhook(BaseModel):
    """What to send again: deliveries by id, or those created in ``[since, until)``."""

    model_config = STRICT

    delivery_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_REPLAY_IDS)] | None = None
    since: Instant | None = None
    until: Instant | None = None

    @model_validator(mode="after")
    def _one_way(self) -> ReplayWebhook:
        if (self.delivery_ids is None) == (self.since is None):
            raise ValueError("give either delivery_ids or since (with until, optionally)")
        if self.until is not None and self.since is None:
            raise ValueError("until needs since")
        return self


def _ms(instant: str) -> int:
    return round(datetime.fromisoformat(instant).timestamp() * 1000)


def _replay(body: ReplayWebhook) -> Replay:
    if body.delivery_ids is not None:
        return Replay(ids=tuple(dict.fromkeys(body.delivery_ids)))
    assert body.since is not None
    return Replay(since=_ms(body.since), until=None if body.until is None else _ms(body.until))


def _unique(events: list[str]) -> list[str]:
    return list(dict.fromkeys(events))


def webhook_json(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": format_ms(endpoint.created_at),
        "updated_at": format_ms(endpoint.updated_at),
    }


def _when(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def delivery_json(endpoint_id: int, delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook_id": message_id(endpoint_id, delivery.stream, delivery.seq),
        "event_type": delivery.event_type,
        "seq": delivery.seq,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": _when(delivery.next_attempt_at),
        "created_at": format_ms(delivery.created_at),
        "delivered_at": _when(delivery.delivered_at),
        "log": [
            {
                "at": format_ms(a.at),
                "status": a.status,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in delivery.log
        ],
    }


@routes.post("/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    body = CreateWebhook.model_validate(await read_json(request))
    endpoint, secret = await services.webhooks.create(
        principal.org_id, body.url, _unique(list(body.events))
    )
    response = json_response({**webhook_json(endpoint), "secret": secret}, status=201)
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get("/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    found = await services.webhooks.endpoints(principal.org_id)
    return json_response({"webhooks": [webhook_json(e) for e in found]})


@routes.get("/v1/webhooks/{webhook_id}")
async def get_webhook(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    endpoint_id = path_id(request, "webhook_id", "Webhook")
    return json_response(webhook_json(await services.webhooks.get(principal.org_id, endpoint_id)))


@routes.patch("/v1/webhooks/{webhook_id}")
async def update_webhook(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    endpoint_id = path_id(request, "webhook_id", "Webhook")
    body = UpdateWebhook.model_validate(await read_json(request))
    endpoint = await services.webhooks.update(
        principal.org_id,
        endpoint_id,
        body.url,
        None if body.events is None else _unique(list(body.events)),
        body.enabled,
    )
    return json_response(webhook_json(endpoint))


@routes.delete("/v1/webhooks/{webhook_id}")
async def delete_webhook(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    endpoint_id = path_id(request, "webhook_id", "Webhook")
    await services.webhooks.delete(principal.org_id, endpoint_id)
    return web.Response(status=204)


@routes.get("/v1/webhooks/{webhook_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    endpoint_id = path_id(request, "webhook_id", "Webhook")
    limit = query_int(request, "limit", DEFAULT_DELIVERIES, 1, MAX_DELIVERIES)
    before = query_int(request, "cursor", None, 1)
    assert limit is not None
    found = await services.webhooks.deliveries(principal.org_id, endpoint_id, before, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(
        {"deliveries": [delivery_json(endpoint_id, d) for d in found], "next_cursor": cursor}
    )


@routes.post("/v1/webhooks/{webhook_id}/replay")
async def replay_webhook(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "admin")
    endpoint_id = path_id(request, "webhook_id", "Webhook")
    body = ReplayWebhook.model_validate(await read_json(request))
    count = await services.webhooks.replay(principal.org_id, endpoint_id, _replay(body))
    return json_response({"replayed": count}, status=202)
