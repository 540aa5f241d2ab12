"""The aiohttp application: routes, the error middleware, health checks."""

from __future__ import annotations

import logging
import re

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from scribeline.api import (
    alert_rules,
    assistants,
    bots,
    campaigns,
    dashboard,
    docs,
    exports,
    organization,
    rest,
    sessions,
    speech,
    tokens,
    webhooks,
)
from scribeline.api.bot_streams import bot_producer, bot_subscriber
from scribeline.api.events import event_stream
from scribeline.api.forwarded import client_address, forwarded_middleware
from scribeline.api.http import SERVER_NAME
from scribeline.api.live import live_transcript
from scribeline.api.media_stream import media_stream
from scribeline.api.metrics import routes as metrics_routes
from scribeline.api.producer import producer
from scribeline.api.request_id import REQUEST, add_request_id, request_id_middleware
from scribeline.api.responses import error_response, to_error
from scribeline.api.state import SERVICES, Services
from scribeline.errors import CloseCode, InternalError
from scribeline.log_context import new_id
from scribeline.readiness import is_ready, summary

__all__ = ["AccessLogger", "create_app", "loggable_path"]

log = logging.getLogger(__name__)


#: Headers of aiohttp's own HTTP errors that the JSON error keeps.
_KEPT_HEADERS = (hdrs.ALLOW,)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every error to a JSON body; internal details never leave the server."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(to_error(exc))
        for name in _KEPT_HEADERS:  # 405 must say what is allowed (RFC 9110 15.5.6)
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception as exc:
        error = to_error(exc)
        if isinstance(error, InternalError):
            log.exception("internal error on %s %s", request.method, loggable_path(request))
        return error_response(error)


async def healthz(request: web.Request) -> web.Response:
    return rest.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 unless a check is unavailable (a durable write, the broker); a degraded
    check (the cluster without Redis) is reported and still ready."""
    checks = await request.app[SERVICES].readiness.check()
    return rest.json_response(
        {"status": summary(checks), "checks": checks},
        status=200 if is_ready(checks) else 503,
    )


#: Paths whose rest may be a credential (``/v1/media-stream/{token}``).
_TOKEN_PATHS = ("/v1/media-stream/",)


#: Control characters, which a percent-encoded path decodes to (``%0A``).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def loggable_path(request: web.BaseRequest) -> str:
    """The request's path without its query string, and without what follows a
    prefix that carries a token in the path: no credential is logged. Control
    characters are percent-encoded again, so no path can start a forged log line."""
    path = request.path
    for prefix in _TOKEN_PATHS:
        if path.startswith(prefix) and len(path) > len(prefix):
            return prefix + "<token>"
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", path)


class AccessLogger(AbstractAccessLogger):
    """One line per request, with :func:`loggable_path` (no token is logged); its
    fields for the JSON log are ``extra``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        remote, path, duration = client_address(request), loggable_path(request), time * 1000
        fields = {
            "method": request.method,
            "path": path,
            "status": response.status,
            "duration_ms": round(duration, 1),
            "remote": remote,
            # Written after the middleware returned: the id is not in the context.
            "request_id": request.get(REQUEST) or new_id(),
        }
        self.logger.info(
            '%s "%s %s" %d %.1fms',
            remote,
            request.method,
            path,
            response.status,
            duration,
            extra=fields,
        )


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[hdrs.SERVER] = SERVER_NAME  # not aiohttp's, which names versions


async def _close_streams(app: web.Application) -> None:
    # SIGTERM: tell every client to reconnect elsewhere (1001) before handlers drain.
    services = app[SERVICES]
    await services.registry.close_all(CloseCode.GOING_AWAY, services.settings.shutdown_timeout)


def create_app(services: Services) -> web.Application:
    middlewares: list[Middleware] = [errors_middleware]
    if services.settings.trusted_proxies:  # first: every handler sees the client's view
        middlewares.insert(0, forwarded_middleware(services.settings.trusted_proxies))
    # Before that: the id is set for the whole request, and a proxy's is told by its peer.
    middlewares.insert(0, request_id_middleware(services.settings.trusted_proxies))
    app = web.Application(client_max_size=services.settings.max_body_bytes, middlewares=middlewares)
    app[SERVICES] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/live-transcript/{call_sid}", live_transcript)
    app.router.add_get("/v1/ingest/{call_sid}", producer)
    app.router.add_get("/v1/media-stream", media_stream)
    app.router.add_get("/v1/media-stream/{token}", media_stream)
    app.router.add_get("/ws/campaigns/{campaign_id}/progress", campaigns.campaign_progress)
    app.router.add_get("/v1/events", event_stream)
    app.router.add_get("/v1/bots/{bot_id}/ws", bot_subscriber)
    app.router.add_get("/v1/bots/{bot_id}/producer", bot_producer)
    app.router.add_routes(rest.routes)
    app.router.add_routes(exports.routes)
    app.router.add_routes(campaigns.routes)
    app.router.add_routes(assistants.routes)
    app.router.add_routes(tokens.routes)
    app.router.add_routes(bots.routes)
    app.router.add_routes(speech.routes)
    app.router.add_routes(organization.routes)
    app.router.add_routes(webhooks.routes)
    app.router.add_routes(alert_rules.routes)
    app.router.add_routes(sessions.routes)
    app.router.add_routes(dashboard.routes)
    app.router.add_routes(metrics_routes(services.settings))
    app.router.add_routes(docs.routes)
    app.on_response_prepare.append(_server_header)
    app.on_response_prepare.append(add_request_id)
    app.on_response_prepare.append(sessions.no_store)
    app.on_shutdown.append(_close_streams)
    return app
