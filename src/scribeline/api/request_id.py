"""Every HTTP request's ``request_id``: on its log lines and in its answer.

The middleware (first in the chain) gives each request an id, sets it as the
context's ``request_id`` while the request is handled (``log_context.py``) and
keeps it on the request for the access log, which aiohttp writes after the
middleware has returned. Every answer, errors included, carries it as
``X-Request-ID``. A WebSocket's lines carry the id of its upgrade request as
well as their own ``connection_id``.

A trusted proxy (``SCRIBELINE_TRUSTED_PROXIES``) may pass its own id in
``X-Request-ID`` so that its log and ours share it; the id is used only when it
is a short token of letters, digits, ``.``, ``_`` and ``-`` that looks like no
credential. From any other peer the header is ignored.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from scribeline.api.forwarded import Network, is_trusted
from scribeline.log_context import REQUEST_ID, new_id
from scribeline.logs import redact

__all__ = ["HEADER", "REQUEST", "add_request_id", "request_id_middleware"]

HEADER: Final = "X-Request-ID"
#: The request's id, on aiohttp's original request (which the access logger gets).
REQUEST: Final = web.RequestKey("scribeline.request_id", str)

_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _proxy_id(request: web.BaseRequest, trusted: tuple[Network, ...]) -> str | None:
    """The id a trusted proxy sent, if it is a safe token."""
    value = request.headers.get(HEADER)
    if value is None or not _TOKEN.fullmatch(value) or redact(value) != value:
        return None
    if not is_trusted(request.remote, trusted):
        return None  # the peer is no trusted proxy: anyone could have written it
    return value


def request_id_middleware(trusted: tuple[Network, ...] = ()) -> Middleware:
    """The middleware (see the module's doc); ``trusted``: the proxies whose
    ``X-Request-ID`` is used. It must come before the forwarded middleware,
    which replaces ``request.remote`` with the client's address."""

    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = (_proxy_id(request, trusted) if trusted else None) or new_id()
        request[REQUEST] = rid
        token = REQUEST_ID.set(rid)
        try:
            return await handler(request)
        finally:
            REQUEST_ID.reset(token)

    return request_id


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request's id in its answer."""
    rid = request.get(REQUEST)
    if rid is not None:
        response.headers[HEADER] = rid
