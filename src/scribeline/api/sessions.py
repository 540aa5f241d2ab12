"""``/dashboard/api/*``: dashboard sign-in and sessions (docs/protocol.md,
"Dashboard sign-in"); the service is ``scribeline.sessions``.

These are the only endpoints that read the session cookie, and each refuses
a request whose ``Origin`` is not the server's own (403) before it looks at
anything else: a cross-site page can neither sign someone in with its own
code nor use their cookie. The cookie is ``HttpOnly`` (no script reads it),
``SameSite=Strict`` and its ``Path`` is ``/dashboard/api/``, so browsers send
it here and nowhere else, never with a WebSocket upgrade. POST bodies must be
``application/json``, which a cross-site form cannot send. Every answer,
errors included, carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web
from pydantic import BaseModel, Field

from scribeline.api.rest import json_response, read_json
from scribeline.api.state import SERVICES, Services
from scribeline.errors import Forbidden, InvalidRequest
from scribeline.events import format_ms
from scribeline.ingest.models import CALL_SID_PATTERN, STRICT
from scribeline.public_url import http_base, origin_of
from scribeline.sessions import MAX_SECRET_CHARS, Session, captions_link

__all__ = ["COOKIE", "COOKIE_PATH", "PREFIX", "no_store", "own_base", "routes"]

routes = web.RouteTableDef()

PREFIX = "/dashboard/api/"
COOKIE = "scribeline_session"
COOKIE_PATH = PREFIX


class SignIn(BaseModel):
    model_config = STRICT

    #: Any string: a malformed code is refused by the service like an unknown one
    #: (401, one answer for every bad code); the body's size limit bounds it.
    code: str


class CaptionsRequest(BaseModel):
    model_config = STRICT

    call_sid: str = Field(pattern=CALL_SID_PATTERN)


def own_base(request: web.Request, services: Services) -> str:
    """The server's base URL: ``SCRIBELINE_PUBLIC_URL`` (as ``http(s)``), else the
    scheme and ``Host`` of the request."""
    public = http_base(services.settings.public_url)
    return public or f"{request.scheme}://{request.host}"


def _guard(request: web.Request) -> tuple[Services, str]:
    """The services and the server's base, once the request is known to come from
    the server's own pages: same ``Origin``, and a JSON body if it has one."""
    services = request.app[SERVICES]
    base = own_base(request, services)
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or origin_of(origin) is None or origin_of(origin) != origin_of(base):
        raise Forbidden("Cross-origin request refused")
    if request.body_exists and request.content_type != "application/json":
        raise InvalidRequest("The request body must be application/json")
    return services, base


def _cookie(request: web.Request) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value and len(value) <= MAX_SECRET_CHARS else None


def _cookie_attributes(base: str) -> dict[str, Any]:
    """The session cookie's scope: no script reads it, no other site's request
    carries it, and the browser sends it to these endpoints only."""
    secure = base.startswith("https://") or None
    return {"path": COOKIE_PATH, "httponly": True, "samesite": "Strict", "secure": secure}


def _body(session: Session) -> dict[str, Any]:
    """``SessionBody``: the access token and what the page shows of the session."""
    org = session.organization
    return {
        "access_token": session.access_token,
        "token_type": "Bearer",
        "expires_in": session.access_expires_at - session.issued_at,
        "expires_at": format_ms(session.access_expires_at * 1000),
        "session_expires_at": format_ms(session.expires_at_ms),
        "read_only": session.read_only,
        "scopes": sorted(session.key.scopes),
        "organization": {"id": org.id, "name": org.name},
    }


@routes.post("/dashboard/api/session")
async def sign_in(request: web.Request) -> web.Response:
    services, base = _guard(request)
    body = SignIn.model_validate(await read_json(request))
    # A cookie already here is the browser's previous session: it ends now.
    session = await services.sessions.sign_in(body.code, replacing=_cookie(request))
    assert session.secret is not None
    response = json_response(_body(session), status=201)
    max_age = services.sessions.session_ttl
    response.set_cookie(COOKIE, session.secret, max_age=max_age, **_cookie_attributes(base))
    return response


@routes.post("/dashboard/api/token")
async def refresh(request: web.Request) -> web.Response:
    services, _ = _guard(request)
    session = await services.sessions.refresh(_cookie(request))
    return json_response(_body(session))


@routes.delete("/dashboard/api/session")
async def sign_out(request: web.Request) -> web.Response:
    services, base = _guard(request)
    await services.sessions.sign_out(_cookie(request))
    response = web.Response(status=204)
    response.del_cookie(COOKIE, **_cookie_attributes(base))
    return response


@routes.post("/dashboard/api/captions")
async def captions(request: web.Request) -> web.Response:
    services, base = _guard(request)
    body = CaptionsRequest.model_validate(await read_json(request))
    minted = await services.sessions.captions(_cookie(request), body.call_sid)
    return json_response(
        {
            "url": captions_link(base, minted.call_sid, minted.token),
            "token": minted.token,
            "expires_at": format_ms(minted.expires_at * 1000),
        },
        status=201,
    )


async def no_store(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: nothing of these endpoints, refusals included, is
    ever cached (they carry tokens and set the cookie)."""
    if request.path.startswith(PREFIX):
        response.headers[hdrs.CACHE_CONTROL] = "no-store"
