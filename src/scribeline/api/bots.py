"""Meeting-bot REST routes (PROTOCOL.md section 4).

The WebSocket URLs in a response carry capability tokens minted for that
response. Who sees which URL follows what the caller could do anyway: the
read-only URL to any reader, the read-write and producer URLs to a writer.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from scribeline import public_url
from scribeline.api.params import query_int
from scribeline.api.rest import authorize_org, json_response, read_json
from scribeline.api.state import Services
from scribeline.auth import Principal
from scribeline.domain import Bot, BotStatus
from scribeline.errors import BotEnded, InvalidRequest
from scribeline.events import format_ms
from scribeline.ingest.bot_models import CreateBot

__all__ = ["bot_json", "capability_urls", "routes"]

routes = web.RouteTableDef()

MAX_LIST = 200
#: Events in one page of ``GET /v1/bots/{id}/events``: at most, and about how many
#: bytes of them (a page always holds at least one).
MAX_EVENTS = 500
MAX_EVENTS_BYTES = 1024 * 1024


def _ws_base(request: web.Request, services: Services) -> str:
    """Where the bot URLs point: ``SCRIBELINE_PUBLIC_URL`` as ``ws(s)`` (an
    ``https`` one as ``wss``), else the request's own host."""
    public = public_url.ws_base(services.settings.public_url)
    return public or f"{'wss' if request.secure else 'ws'}://{request.host}"


def capability_urls(
    services: Services, principal: Principal, bot: Bot, ws_base: str
) -> dict[str, str | None]:
    """The bot's WebSocket URLs that ``principal`` may see, each with a fresh token."""
    urls: dict[str, str | None] = {
        "websocket_url": None,
        "websocket_read_only_url": None,
        "producer_url": None,
    }
    if bot.ended:
        return urls
    base = f"{ws_base}/v1/bots/{bot.public_id}"
    now = time.time()
    ttl = int(services.settings.bot_token_ttl)
    writer = principal.has("write")

    def url(path: str, role: str) -> str:
        token = services.auth.mint_capability(
            principal, bot_id=bot.public_id, role=role, ttl_seconds=ttl, now=now
        )
        return f"{base}/{path}?token={token}"

    if bot.realtime:
        urls["websocket_read_only_url"] = url("ws", "read-only")
        if writer:
            urls["websocket_url"] = url("ws", "read-write")
    if writer:
        urls["producer_url"] = url("producer", "producer")
    return urls


def bot_json(bot: Bot) -> dict[str, Any]:
    return {
        "id": bot.public_id,
        "status": bot.status,
        "meeting_url": bot.meeting_url,
        "bot_name": bot.bot_name,
        "transcription_model": bot.transcription_model,
        "created_at": format_ms(bot.created_at),
        "started_at": format_ms(bot.started_at) if bot.started_at else None,
        "ended_at": format_ms(bot.ended_at) if bot.ended_at else None,
        "stop_reason": bot.stop_reason,
        "error": bot.error,
    }


def _respond(
    request: web.Request, services: Services, principal: Principal, bot: Bot, status: int = 200
) -> web.Response:
    body = bot_json(bot) | capability_urls(services, principal, bot, _ws_base(request, services))
    response = json_response(body, status=status)
    response.headers["Cache-Control"] = "no-store"  # it carries capability tokens
    return response


@routes.post("/v1/bots")
async def create_bot(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "write")
    body = CreateBot.model_validate(await read_json(request))
    bot = await services.bots.create(
        principal.org_id,
        principal.key_id,
        str(body.meeting_url),
        body.bot_name,
        body.transcription_model,
    )
    return _respond(request, services, principal, bot, status=201)


@routes.get("/v1/bots")
async def list_bots(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    status = request.query.get("status")
    if status is not None and status not in set(BotStatus):
        raise InvalidRequest(f"status must be one of {', '.join(BotStatus)}")
    limit = query_int(request, "limit", 50, 1, MAX_LIST)
    assert limit is not None
    bots = await services.bots.list_bots(principal.org_id, status, limit)
    return json_response({"bots": [bot_json(b) for b in bots]})


@routes.get("/v1/bots/{bot_id}")
async def get_bot(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    bot = await services.bots.get(principal.org_id, request.match_info["bot_id"])
    return _respond(request, services, principal, bot)


@routes.get("/v1/bots/{bot_id}/events")
async def bot_events(request: web.Request) -> web.Response:
    """A page of the bot's stored events (``after`` a seq, at most ``limit``), each
    as the organization event stream's ``meeting`` topic has it."""
    services, principal = await authorize_org(request, "read")
    bot = await services.bots.get(principal.org_id, request.match_info["bot_id"])
    after = query_int(request, "after", 0)
    limit = query_int(request, "limit", MAX_EVENTS, 1, MAX_EVENTS)
    assert after is not None and limit is not None
    page = await services.bots.events(bot, after, limit, MAX_EVENTS_BYTES)
    next_cursor = None if page.next_after is None else str(page.next_after)
    body = b'{"events":[%b],"next_cursor":%b}' % (b",".join(page.frames), orjson.dumps(next_cursor))
    return web.Response(body=body, content_type="application/json")


@routes.post("/v1/bots/{bot_id}/stop")
async def stop_bot(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "write")
    bot = await services.bots.get(principal.org_id, request.match_info["bot_id"])
    if bot.ended:
        raise BotEnded(f"Bot {bot.public_id} has already {bot.status}")
    await services.bots.stop(bot)
    bot = await services.bots.get(principal.org_id, bot.public_id)
    return _respond(request, services, principal, bot)
