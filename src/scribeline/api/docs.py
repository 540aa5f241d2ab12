"""``GET /openapi.json`` and the interactive API docs at ``/docs``.

The document is built once from the route table (``api/openapi_routes.py``).
The docs page is Swagger UI, vendored in ``api/docs_static`` (package data,
no CDN), served like the dashboard's files: a content security policy that
allows only this server (``dashboard.content_security_policy``), ``nosniff``,
``no-referrer``, revalidated on each load.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from aiohttp import hdrs, web

from scribeline.api.dashboard import CONTENT_TYPES, content_security_policy
from scribeline.api.openapi_routes import DOCS_ASSETS, METRICS, document
from scribeline.errors import NotFound

__all__ = ["docs_root", "routes"]

routes = web.RouteTableDef()


@functools.cache
def docs_root() -> Path:
    """The directory of the docs page's files, inside the installed package."""
    root = resources.files("scribeline.api") / "docs_static"
    if not isinstance(root, Path):  # FileResponse needs real files
        raise RuntimeError(f"the API docs' files are not on a file system: {root}")
    return root.resolve()


def _serve(name: str) -> web.FileResponse:
    path = docs_root() / name
    response = web.FileResponse(path)  # conditional requests, HEAD and ranges
    headers = response.headers
    headers[hdrs.CONTENT_TYPE] = CONTENT_TYPES[path.suffix]
    headers["Content-Security-Policy"] = content_security_policy(None)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers[hdrs.CACHE_CONTROL] = "no-cache"
    return response


def _serves_metrics(app: web.Application) -> bool:
    return any(
        route.method == METRICS.method and route.resource.canonical == METRICS.path
        for route in app.router.routes()
        if route.resource is not None
    )


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    body = document(metrics=_serves_metrics(request.app))
    return web.Response(body=body, content_type="application/json")


@routes.get("/docs")
async def docs_page(request: web.Request) -> web.StreamResponse:
    return _serve("index.html")


@routes.get("/docs/{asset}")
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    if name not in DOCS_ASSETS:
        raise NotFound("Not found")
    return _serve(name)
