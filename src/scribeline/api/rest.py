"""REST ingest and look-ups for calls (PROTOCOL.md section 6)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from scribeline.api.params import query_int
from scribeline.api.responses import json_response
from scribeline.api.state import SERVICES, Services
from scribeline.auth import Principal, rest_credentials
from scribeline.domain import Call
from scribeline.errors import InvalidJson, InvalidRequest, RequestTimeout
from scribeline.events import CallStatus, format_ms
from scribeline.ingest.models import CreateCall, SetStatus, Transcript, TranscriptBatch

__all__ = ["authorize", "authorize_org", "call_json", "json_response", "read_json", "routes"]

routes = web.RouteTableDef()

MAX_PAGE = 200
#: Final transcripts in one page of ``GET /v1/calls/{sid}``: by default, at most,
#: and about how many bytes of them (a page always holds at least one).
DEFAULT_TRANSCRIPT_PAGE = 500
MAX_TRANSCRIPT_PAGE = 1000
MAX_TRANSCRIPT_PAGE_BYTES = 1024 * 1024


def call_json(call: Call) -> dict[str, Any]:
    return {
        "call_sid": call.call_sid,
        "status": call.status,
        "assistant_id": call.assistant_id,
        "started_at": format_ms(call.started_at),
        "ended_at": format_ms(call.ended_at) if call.ended_at is not None else None,
        "to_phone_number": call.to_phone_number,
        "customer_phone_number": call.customer_phone_number,
        "call_type": call.call_type,
    }


async def authorize(request: web.Request, scope: str) -> tuple[Services, Principal]:
    """The credential's principal, which must have ``scope``."""
    services = request.app[SERVICES]
    credentials = rest_credentials(request)
    principal = await services.auth.authenticate(credentials.token)
    principal.require(scope)
    return services, principal


async def authorize_org(request: web.Request, scope: str) -> tuple[Services, Principal]:
    """A principal allowed organization-wide operations."""
    services, principal = await authorize(request, scope)
    principal.allow_organization()
    return services, principal


async def _call(request: web.Request, scope: str) -> tuple[Services, Call]:
    """The call named in the path, if the credential may reach it."""
    services, principal = await authorize(request, scope)
    call_sid = request.match_info["call_sid"]
    principal.allow_call(call_sid)
    return services, await services.calls.get(principal.org_id, call_sid)


async def read_json(request: web.Request, empty: Any = None) -> Any:
    """The JSON body (bounded by the server's body limit); ``empty`` stands in for
    an empty body where the endpoint allows one."""
    if request.content.is_eof():  # all there already (most bodies): no timer needed
        raw = await request.read()  # bounded by client_max_size (413 beyond)
    else:
        try:
            async with asyncio.timeout(request.app[SERVICES].settings.http_body_timeout):
                raw = await request.read()
        except TimeoutError:
            raise RequestTimeout("The request body did not arrive in time") from None
    if empty is not None and not raw.strip():
        return empty
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJson("Request body is not valid JSON") from None


@routes.post("/v1/calls")
async def create_call(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "write")
    body = CreateCall.model_validate(await read_json(request))
    call = await services.calls.create(principal.org_id, body)
    return json_response(call_json(call), status=201)


@routes.get("/v1/calls")
async def list_calls(request: web.Request) -> web.Response:
    services, principal = await authorize_org(request, "read")
    status = request.query.get("status")
    if status is not None and status not in CallStatus.__members__.values():
        raise InvalidRequest(f"Unknown status {status[:64]!r}")
    limit = query_int(request, "limit", 50, 1, MAX_PAGE)
    assert limit is not None
    page = await services.calls.list_calls(
        principal.org_id, status, limit, request.query.get("cursor")
    )
    return json_response(
        {"calls": [call_json(c) for c in page.calls], "next_cursor": page.next_cursor}
    )


@routes.get("/v1/calls/{call_sid}")
async def get_call(request: web.Request) -> web.Response:
    """The call and one page of its final transcript (``limit``, ``cursor``)."""
    services, call = await _call(request, "read")
    limit = query_int(request, "limit", DEFAULT_TRANSCRIPT_PAGE, 1, MAX_TRANSCRIPT_PAGE)
    after = query_int(request, "cursor", 0)
    assert limit is not None and after is not None
    page = await services.calls.transcript(call, after, limit, MAX_TRANSCRIPT_PAGE_BYTES)
    transcript = [{**e.data, "seq": e.seq, "created_at": format_ms(e.ts)} for e in page.events]
    next_cursor = None if page.next_after is None else str(page.next_after)
    return json_response({**call_json(call), "transcript": transcript, "next_cursor": next_cursor})


@routes.post("/v1/calls/{call_sid}/transcripts")
async def append_transcripts(request: web.Request) -> web.Response:
    services, call = await _call(request, "write")
    body = await read_json(request)
    if isinstance(body, list):
        if not body or len(body) > services.settings.max_batch_items:
            raise InvalidRequest(
                f"A batch holds 1 to {services.settings.max_batch_items} transcripts"
            )
        items = TranscriptBatch.validate_python(body)
        stored = await services.calls.append_transcripts(call, items)
        return json_response({"seqs": [e.seq for e in stored]}, status=201)
    item = Transcript.model_validate(body)
    (event,) = await services.calls.append_transcripts(call, [item])
    return json_response({"seq": event.seq}, status=201)


@routes.post("/v1/calls/{call_sid}/status")
async def set_status(request: web.Request) -> web.Response:
    services, call = await _call(request, "write")
    body = SetStatus.model_validate(await read_json(request))
    event = await services.calls.set_status(call, body.status, body.metadata)
    return json_response({"seq": event.seq}, status=201)
