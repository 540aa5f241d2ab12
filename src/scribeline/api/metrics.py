"""``GET /metrics``: the server's metrics in Prometheus's text format (0.0.4).

On the public port, unless ``metrics_listen`` gives it an address of its own
(a small site in the same process, with that one route), and not at all when
``metrics_enabled`` is off. With ``metrics_token`` set a scrape must send
``Authorization: Bearer <token>``, compared in constant time; anything else
is answered 401 with the API's JSON error.
"""

from __future__ import annotations

import errno
import hmac
import os

from aiohttp import hdrs, web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from scribeline.api.http import SERVER_NAME, Runner
from scribeline.api.responses import error_response
from scribeline.api.state import SERVICES, Services
from scribeline.auth import rest_credentials
from scribeline.config import Settings
from scribeline.errors import AuthenticationFailed, ScribelineError
from scribeline.workers import WORKER_ENV

__all__ = ["CONTENT_TYPE", "MetricsListenError", "metrics", "routes", "serve_metrics"]

#: What ``/metrics`` answers with.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class MetricsListenError(OSError):
    """``metrics_listen`` cannot be listened on; ``strerror`` says so in one line
    that names the setting (not the public port's)."""


def routes(settings: Settings) -> list[web.RouteDef]:
    """``/metrics`` on the public application, unless it is off or served elsewhere."""
    if not settings.metrics_enabled or settings.metrics_listen:
        return []
    return [web.get("/metrics", metrics, allow_head=False)]


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        _check_token(request, services.settings.metrics_token.get_secret_value())
    except ScribelineError as exc:
        return error_response(exc)
    assert services.metrics is not None  # the route exists only with metrics on
    return web.Response(body=services.metrics.render(), headers={hdrs.CONTENT_TYPE: CONTENT_TYPE})


def _check_token(request: web.Request, expected: str) -> None:
    if not expected:
        return
    given = rest_credentials(request).token or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise AuthenticationFailed("Metrics need Authorization: Bearer <metrics token>")


async def serve_metrics(services: Services) -> web.AppRunner | None:
    """Serve ``/metrics`` on ``metrics_listen`` (None: not set, or metrics are off).
    Worker ``i`` of ``--workers`` takes the port after worker ``i - 1``'s (each has
    metrics of its own). The caller cleans the runner up when the server stops."""
    settings = services.settings
    if not (settings.metrics_enabled and settings.metrics_listen):
        return None
    host, _, port_text = settings.metrics_listen.rpartition(":")
    port = int(port_text)
    worker = os.environ.get(WORKER_ENV)
    if port and worker:
        port += int(worker) - 1
    app = web.Application()
    app[SERVICES] = services
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.on_response_prepare.append(_server_header)
    runner = Runner(
        app,
        header_timeout=settings.http_header_timeout,
        keepalive_timeout=settings.http_keepalive_timeout,
        access_log=None,
        handle_signals=False,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]"), port).start()
    except OSError as exc:
        await runner.cleanup()
        problem = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            problem = "the port is in use"
        raise MetricsListenError(
            exc.errno,
            f"cannot serve metrics on {host}:{port}: {problem}; choose another"
            " SCRIBELINE_METRICS_LISTEN",
        ) from exc
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"Scribeline metrics on http://{shown}:{bound_port}/metrics", flush=True)
    return runner


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[hdrs.SERVER] = SERVER_NAME
