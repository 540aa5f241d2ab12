"""Campaign REST routes and ``GET /ws/campaigns/{id}/progress`` (PROTOCOL.md section 2)."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from scribeline.api.params import path_id, query_int
from scribeline.api.rest import authorize, authorize_org, json_response, read_json
from scribeline.api.state import SERVICES, Services
from scribeline.api.websocket import (
    Endpoint,
    authenticate,
    detach_stream,
    join_stream,
    serve_websocket,
)
from scribeline.auth import Credentials
from scribeline.connection import Connection, Inbound
from scribeline.domain import Campaign, Contact, Counters
from scribeline.errors import (
    CloseCode,
    InvalidMessage,
    InvalidRequest,
    NotFound,
    ScribelineError,
)
from scribeline.events import Position, format_ms, now_ms
from scribeline.hub import CaughtUp
from scribeline.ingest.models import ContactBatch, CreateCampaign, NewContact, Outcome
from scribeline.numbers import parse_int
from scribeline.protocols import campaign_progress as proto
from scribeline.protocols.frames import text_frame

__all__ = ["campaign_progress", "routes"]

routes = web.RouteTableDef()

FORMAT = "campaign-progress"

#: Campaigns listed by ``GET /v1/campaigns`` (the newest).
MAX_CAMPAIGNS = 200

#: Contacts in one page of ``GET /v1/campaigns/{id}/contacts``: by default and at most.
DEFAULT_CONTACT_PAGE = 500
MAX_CONTACT_PAGE = 1000


def campaign_json(campaign: Campaign, counters: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "assistant_id": campaign.assistant_id,
        "status": campaign.status,
        "created_at": format_ms(campaign.created_at),
        "started_at": format_ms(campaign.started_at) if campaign.started_at else None,
        "completed_at": format_ms(campaign.completed_at) if campaign.completed_at else None,
        "progress": counters,
    }


def contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "phone_number": contact.phone_number,
        "name": contact.name,
        "status": contact.status,
        "call_sid": contact.call_sid,
        "duration": contact.duration,
        "error": contact.error,
    }


async def _campaign(request: web.Request, scope: str) -> tuple[Services, Campaign]:
    services, principal = await authorize(request, scope)
    campaign_id = path_id(request, "campaign_id", "Campaign")
    principal.allow_campaign(campaign_id)
    return services, await services.campaigns.get(principal.org_id, campaign_id)


async def _respond(services: Services, campaign: Campaign, status: int = 200) -> web.Response:
    counters = await services.campaigns.counters(campaign)
    return json_response(campaign_json(campaign, counters.progress()), status=status)


@routes.post("/v1/campaigns")
async def create_campaign(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "write")
    body = CreateCampaign.model_validate(await read_json(request))
    campaign = await services.campaigns.create(principal.org_id, body.name, body.assistant_id)
    return await _respond(services, campaign, status=201)


@routes.get("/v1/campaigns")
async def list_campaigns(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    campaigns = await services.campaigns.list_campaigns(principal.org_id, MAX_CAMPAIGNS)
    listed = [campaign_json(campaign, counters.progress()) for campaign, counters in campaigns]
    return json_response({"campaigns": listed})


@routes.get("/v1/campaigns/{campaign_id}")
async def get_campaign(request: web.Request) -> web.Response:
    services, campaign = await _campaign(request, "read")
    return await _respond(services, campaign)


@routes.post("/v1/campaigns/{campaign_id}/contacts")
async def add_contacts(request: web.Request) -> web.Response:
    services, campaign = await _campaign(request, "write")
    body = await read_json(request)
    items = (
        ContactBatch.validate_python(body)
        if isinstance(body, list)
        else [NewContact.model_validate(body)]
    )
    if not items or len(items) > services.settings.max_batch_items:
        raise InvalidRequest(f"Add 1 to {services.settings.max_batch_items} contacts at once")
    added = await services.campaigns.add_contacts(
        campaign, [(c.phone_number, c.name) for c in items]
    )
    return json_response({"contacts": [contact_json(c) for c in added]}, status=201)


@routes.get("/v1/campaigns/{campaign_id}/contacts")
async def list_contacts(request: web.Request) -> web.Response:
    """One page of the campaign's contacts (``limit``, ``cursor``), in id order."""
    services, campaign = await _campaign(request, "read")
    limit = query_int(request, "limit", DEFAULT_CONTACT_PAGE, 1, MAX_CONTACT_PAGE)
    after = query_int(request, "cursor", 0)
    assert limit is not None and after is not None
    contacts = await services.campaigns.contacts(campaign, after, limit + 1)
    more = len(contacts) > limit
    contacts = contacts[:limit]
    return json_response(
        {
            "contacts": [contact_json(c) for c in contacts],
            "next_cursor": str(contacts[-1].id) if more else None,
        }
    )


@routes.post("/v1/campaigns/{campaign_id}/start")
async def start_campaign(request: web.Request) -> web.Response:
    services, campaign = await _campaign(request, "write")
    return await _respond(services, await services.campaigns.start(campaign))


@routes.post("/v1/campaigns/{campaign_id}/contacts/{contact_id}/outcome")
async def record_outcome(request: web.Request) -> web.Response:
    services, campaign = await _campaign(request, "write")
    contact_id = path_id(request, "contact_id", "Contact")
    body = Outcome.model_validate(await read_json(request))
    contact = await services.campaigns.record_outcome(
        campaign, contact_id, body.outcome, body.duration, body.call_sid, body.error
    )
    return json_response(contact_json(contact))


async def campaign_progress(request: web.Request) -> web.StreamResponse:
    """The campaign's live progress: snapshot, contact results, coalesced progress."""
    services = request.app[SERVICES]
    # 0 (no campaign has it) for an id that cannot exist: refused as not found
    # after authentication, like any other missing campaign.
    campaign_id = parse_int(request.match_info["campaign_id"], 1) or 0
    render = partial(_render_error, campaign_id)

    async def join(conn: Connection, credentials: Credentials) -> str:
        return await _join(services, conn, campaign_id, credentials.token)

    async def answer(conn: Connection, stream: str, message: Inbound) -> None:
        try:
            proto.decode_client(message.text())
            conn.send(proto.encode_pong(now_ms()))
        except InvalidMessage as exc:
            conn.send(render(exc))

    async def leave(conn: Connection, stream: str) -> None:
        await detach_stream(services, conn, stream)

    return await serve_websocket(request, Endpoint(join, None, render, leave, answer=answer))


async def _join(services: Services, conn: Connection, campaign_id: int, token: str | None) -> str:
    principal = await authenticate(services, conn, token)
    principal.require("read")
    if campaign_id == 0:
        raise NotFound("Campaign not found")
    principal.allow_campaign(campaign_id)
    campaign = await services.campaigns.get(principal.org_id, campaign_id)
    stream = campaign.stream
    encoder = partial(proto.encode_event, campaign_id)

    async def catch_up(snapshot: tuple[Position, Counters]) -> CaughtUp:
        # Live only: the snapshot stands for everything up to the stream's head,
        # both read in one transaction so no change falls between them.
        head, counters = snapshot
        now = now_ms()
        conn.send(proto.encode_connected(campaign_id, now))
        conn.send(proto.encode_progress(campaign_id, counters.progress(), now))
        # Completed as of the snapshot (not of the look-up before attaching, which a
        # completion in between would make stale): its last event is the completion.
        if counters.done:
            completed = await services.campaigns.completion(campaign, head)
            if completed is not None:
                payload = proto.encode_event(campaign_id, completed)
                assert payload is not None
                conn.write(text_frame(payload))
            conn.close_soon(CloseCode.NORMAL)
        return CaughtUp(head.seq)

    snapshot = partial(services.campaigns.snapshot, campaign)
    join = partial(services.hub.join_snapshot, stream, conn, FORMAT, encoder, snapshot, catch_up)
    await join_stream(services, conn, stream, "campaign", join)
    return stream


def _render_error(campaign_id: int, error: ScribelineError) -> bytes:
    return proto.encode_error(campaign_id, error, now_ms())
