"""The supervisor dashboard's files: ``/`` and ``/dashboard/...``.

The page is static files inside the package (``scribeline/dashboard/static``,
package data in the wheel), served as they are: no build step, no CDN. Every
file goes out with a content security policy that allows only the server's
own scripts, styles and sockets (so markup that reaches the page as data can
never run), ``nosniff`` and ``no-referrer``, and ``Cache-Control: no-cache``:
browsers revalidate each load with the ETag / Last-Modified that
``FileResponse`` sets (a 304 when unchanged), so a new version shows at once.

Only regular files under that directory are served: a path with an empty,
``.``, ``..`` or hidden segment, a directory or anything outside is not found.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

from aiohttp import hdrs, web

from scribeline.api.state import SERVICES
from scribeline.errors import NotFound
from scribeline.public_url import ws_origin

__all__ = ["CONTENT_TYPES", "content_security_policy", "routes", "socket_origin", "static_root"]

routes = web.RouteTableDef()

#: Content types of the page's files; text ones are always UTF-8.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/vnd.microsoft.icon",
    ".woff2": "font/woff2",
}
#: Anything else (nosniff: a browser never guesses it is a script).
FALLBACK_TYPE = "application/octet-stream"

#: A Host header worth naming in the policy: a name or address and a port. Any other
#: (it is the client's to write) leaves the policy at ``'self'``.
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


@functools.cache
def static_root() -> Path:
    """The directory of the page's files, inside the installed package."""
    root = resources.files("scribeline") / "dashboard" / "static"
    # FileResponse needs real files: an installed package (wheel, source tree) has them.
    if not isinstance(root, Path):
        raise RuntimeError(f"the dashboard's files are not on a file system: {root}")
    return root.resolve()


def socket_origin(request: web.Request, public_url: str) -> str | None:
    """The origin the page's WebSockets go to: that of ``public_url`` when set
    (``http(s)`` or ``ws(s)``), else the request's own (``ws(s)://`` its host)."""
    if public_url:
        return ws_origin(public_url)
    if not _HOST.fullmatch(request.host):
        return None
    return f"{'wss' if request.secure else 'ws'}://{request.host}"


def content_security_policy(ws: str | None) -> str:
    """Own scripts and styles only (no inline code), images also as ``data:``,
    connections to this server and its WebSocket origin; no framing, no forms."""
    connect = "'self'" if ws is None else f"'self' {ws}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        f" connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _file(name: str) -> Path:
    """The page's file ``name`` (a relative path), or ``NotFound``."""
    parts = name.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
        raise NotFound("Not found")
    root = static_root()
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("Not found")
    return path


def _serve(request: web.Request, name: str) -> web.FileResponse:
    path = _file(name)
    response = web.FileResponse(path)  # conditional requests, HEAD and ranges
    public_url = request.app[SERVICES].settings.public_url
    headers = response.headers
    headers[hdrs.CONTENT_TYPE] = CONTENT_TYPES.get(path.suffix.lower(), FALLBACK_TYPE)
    headers["Content-Security-Policy"] = content_security_policy(socket_origin(request, public_url))
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers[hdrs.CACHE_CONTROL] = "no-cache"
    return response


@routes.get("/")
@routes.get("/dashboard")
async def to_dashboard(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dashboard/")


@routes.get("/dashboard/")
async def index(request: web.Request) -> web.StreamResponse:
    return _serve(request, "index.html")


@routes.get("/dashboard/{name:.+}")
async def dashboard_file(request: web.Request) -> web.StreamResponse:
    return _serve(request, request.match_info["name"])
