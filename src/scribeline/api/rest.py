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
from scribeline.events import CallStatus, StoredEvent, format_ms
from scribeline.ingest.models import CreateCall, SetStatus, Transcript, TranscriptBatch

__all__ = [
    "alerts_json",
    "authorize",
    "authorize_org",
    "call_json",
    "json_response",
    "read_json",
    "routes",
    "transcript_json",
]

routes = web.RouteTableDef()

MAX_PAGE = 200
_STATUSES = frozenset(CallStatus)
#: What ``GET /v1/calls`` may add to each call.
_INCLUDES = frozenset({"latest"})
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


def transcript_json(event: StoredEvent) -> dict[str, Any]:
    """A stored transcript as REST shows it: its data, ``seq`` and ``created_at``."""
    return {**event.data, "seq": event.seq, "created_at": format_ms(event.ts)}


def alerts_json(count: int, last: StoredEvent) -> dict[str, Any]:
    """A call's alerts in a snapshot: how many, and the newest (its data, ``seq``
    and ``created_at``)."""
    return {"count": count, "last": transcript_json(last)}


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


def _statuses(request: web.Request) -> frozenset[str] | None:
    """``status``: one status or a comma list of them (None: any)."""
    raw = request.query.get("status")
    if raw is None:
        return None
    statuses = frozenset(raw.split(","))
    for status in statuses:
        if status not in _STATUSES:
            raise InvalidRequest(f"Unknown status {status[:64]!r}")
    return statuses


def _includes(request: web.Request) -> frozenset[str]:
    """``include``: a comma list of what to add to each call (``latest``)."""
    raw = request.query.get("include")
    included = frozenset() if raw is None else frozenset(raw.split(","))
    if included - _INCLUDES:
        raise InvalidRequest(f"include must be one of {', '.join(sorted(_INCLUDES))}")
    return included


@routes.get("/v1/calls")
async def list_calls(request: web.Request) -> web.Response:
    """A page of the organization's calls; ``include=latest`` adds to each its
    stream's head, newest transcript line and alerts, as of that head."""
    services, principal = await authorize_org(request, "read")
    statuses = _statuses(request)
    included = _includes(request)
    limit = query_int(request, "limit", 50, 1, MAX_PAGE)
    assert limit is not None
    cursor = request.query.get("cursor")
    if "latest" not in included:
        page = await services.calls.list_calls(principal.org_id, statuses, limit, cursor)
        calls = [call_json(c) for c in page.calls]
        return json_response({"calls": calls, "next_cursor": page.next_cursor})
    snapshots, next_cursor = await services.calls.snapshots(
        principal.org_id, statuses, limit, cursor
    )
    calls = [
        {
            **call_json(s.call),
            "last_seq": s.last_seq,
            "latest": None if s.latest is None else transcript_json(s.latest),
            "alerts": None if s.alerts is None else alerts_json(*s.alerts),
        }
        for s in snapshots
    ]
    return json_response({"calls": calls, "next_cursor": next_cursor})


@routes.get("/v1/calls/{call_sid}")
async def get_call(request: web.Request) -> web.Response:
    """The call and one page of its final transcript (``limit``, ``cursor``)."""
    services, call = await _call(request, "read")
    limit = query_int(request, "limit", DEFAULT_TRANSCRIPT_PAGE, 1, MAX_TRANSCRIPT_PAGE)
    after = query_int(request, "cursor", 0)
    assert limit is not None and after is not None
    page = await services.calls.transcript(call, after, limit, MAX_TRANSCRIPT_PAGE_BYTES)
    transcript = [transcript_json(e) for e in page.events]
    next_cursor = None if page.next_after is None else str(page.next_after)
    return json_response({**call_json(call), "transcript": transcript, "next_cursor": next_cursor})


@routes.delete("/v1/calls/{call_sid}")
async def delete_call(request: web.Request) -> web.Response:
    """Delete the call, its events and every per-call row (a live call is ended
    first); an organization-wide admin credential only."""
    services, principal = await authorize_org(request, "admin")
    await services.calls.delete(principal.org_id, request.match_info["call_sid"], principal.key_id)
    return web.Response(status=204)


@routes.post("/v1/calls/{call_sid}/transcripts")
async def append_transcripts(request: web.Request) -> web.Response:
    services, principal = await authorize(request, "write")
    call_sid = request.match_info["call_sid"]
    principal.allow_call(call_sid)
    call = await services.calls.for_append(principal.org_id, call_sid)
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
