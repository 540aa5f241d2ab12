"""``/openapi.json`` and ``/docs``: a valid OpenAPI 3.1 document of exactly the
application's routes, and interactive docs that load nothing from elsewhere."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin

import aiohttp
import orjson
from aiohttp import web
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from scribeline.api.app import create_app
from scribeline.api.openapi_routes import DOCS_ASSETS, METRICS, OPERATIONS, document
from scribeline.api.openapi_schemas import ErrorBody
from scribeline.config import Settings

from .helpers import ServerProcess

METHODS = ("get", "post", "put", "patch", "delete")


def _app() -> web.Application:
    """The application as ``serve`` builds it (its routes need no running services)."""
    return create_app(SimpleNamespace(settings=Settings()))  # type: ignore[arg-type]


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route but HEAD, which aiohttp adds beside each GET."""
    routes = set()
    for route in app.router.routes():
        assert route.resource is not None
        routes.add((route.method, route.resource.canonical))
    heads = {path for method, path in routes if method == "HEAD"}
    assert heads <= {path for method, path in routes if method == "GET"}
    return {(method, path) for method, path in routes if method != "HEAD"}


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


async def _get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        return orjson.loads(await response.read())


async def test_document_is_valid_openapi_3_1(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """The served document passes openapi-spec-validator as OpenAPI 3.1."""
    doc = await _get_json(http, f"{server.base_url}/openapi.json")
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)


async def test_every_route_is_documented_and_nothing_else(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """The operations of the served document are exactly the application's routes."""
    app = _app()
    doc = await _get_json(http, f"{server.base_url}/openapi.json")
    routes = _routes(app)
    documented = _operations(doc)
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "operations that are no route"
    # /metrics is described only where it is a route of the application.
    assert ((METRICS.method, METRICS.path) in routes) == (METRICS.path in doc["paths"])
    assert doc == orjson.loads(document(metrics=METRICS.path in doc["paths"]))


def test_path_parameters_are_the_routes() -> None:
    """Each operation declares the path parameters its route matches, no more."""
    for op in OPERATIONS:
        declared = {p.name for p in op.params if p.where == "path"}
        assert declared == set(re.findall(r"{(\w+)}", op.path)), op.id


def test_error_answers_share_the_error_body() -> None:
    """Every error response of the document is ErrorBody, which the server's errors fit."""
    doc = orjson.loads(document())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) >= 400 and path != "/readyz":
                    assert response == {"$ref": f"#/components/responses/E{status}"}, (
                        method,
                        path,
                        status,
                    )
    ErrorBody.model_validate({"error": "invalid_request", "message": "x", "details": []})


async def test_websocket_routes_refuse_a_plain_get_as_documented(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """Each WebSocket route (documented as 101) refuses a request that is not an
    upgrade with a documented 4xx: 400 ``invalid_upgrade``, or the media stream's 401
    for a credential it checks before the upgrade."""
    doc = orjson.loads(document())
    sockets = {
        path: item["get"]["responses"]
        for path, item in doc["paths"].items()
        if "101" in item.get("get", {}).get("responses", {})
    }
    assert len(sockets) == 8
    for path, responses in sockets.items():
        url = server.base_url + re.sub(r"{\w+}", "1", path)
        async with http.get(url) as response:
            assert str(response.status) in responses and response.status < 500, path
            body = ErrorBody.model_validate(orjson.loads(await response.read()))
        expected = "authentication_failed" if "{token}" in path else "invalid_upgrade"
        assert body.error == expected, path


_REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


async def test_docs_page_is_self_contained(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """``/docs`` references no other site, allows only this server in its policy, and
    every file it references is served (200, with the same policy)."""
    page_url = f"{server.base_url}/docs"
    async with http.get(page_url) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "http" not in policy.replace("'self'", "")
    assert "//" not in html
    # The empty icon is inline (``data:``), so the browser asks for no /favicon.ico.
    references = [r for r in _REF.findall(html) if r != "data:,"]
    assert len(references) == 3
    for reference in references:
        url = urljoin(page_url, reference)
        assert url.startswith(f"{server.base_url}/docs/")
        async with http.get(url) as response:
            assert response.status == 200, url
            assert response.headers["Content-Security-Policy"] == policy
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.content_type in ("text/javascript", "text/css")
            body = await response.read()
        assert body
    assert {r.rsplit("/", 1)[-1] for r in references} == set(DOCS_ASSETS)


async def test_docs_serves_only_its_assets(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """``/docs/{asset}`` serves the listed files and nothing else of the package."""
    for name in ("index.html", "README.md", "LICENSE", "..%2Fdocs.py"):
        async with http.get(f"{server.base_url}/docs/{name}") as response:
            assert response.status == 404, name
            assert (await response.json())["error"] == "not_found"


async def test_docs_script_loads_this_servers_document(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """The page's own script points Swagger UI at ``openapi.json`` and turns off the
    validator badge, which would call an outside service."""
    async with http.get(f"{server.base_url}/docs/init.js") as response:
        script = await response.text()
    assert '"openapi.json"' in script and "validatorUrl: null" in script
    assert "http" not in script


async def test_dashboard_calls_document_their_refusal_of_a_body_not_json(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """Each of the dashboard's calls refuses a body that is not JSON (even one that
    takes no body) with 422, which the document lists for it."""
    doc = orjson.loads(document())
    calls = [
        (method, path, op["responses"])
        for path, item in doc["paths"].items()
        if path.startswith("/dashboard/api/")
        for method, op in item.items()
    ]
    assert len(calls) == 4
    headers = {"Origin": server.base_url, "Content-Type": "text/plain"}
    for method, path, responses in calls:
        url = server.base_url + path
        async with http.request(method, url, data="x", headers=headers) as response:
            assert response.status == 422, (method, path)
            assert (await response.json())["error"] == "invalid_request"
        assert "422" in responses, (method, path)
