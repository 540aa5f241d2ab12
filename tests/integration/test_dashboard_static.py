"""The dashboard's files, served by a real server: ``/`` and ``/dashboard/...`` (the
package's ``dashboard/static``), their security and caching headers, and nothing
else of the file system."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from scribeline.api.dashboard import static_root

from .helpers import RECV_TIMEOUT, ServerProcess, running_server

#: What each kind of file must be sent as (independent of the server's own table).
EXPECTED_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/vnd.microsoft.icon",
}


def csp(ws_origin: str) -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        f" connect-src 'self' {ws_origin}; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    )


def packaged_files() -> list[Path]:
    """Every file of the page, as the package holds it."""
    root = static_root()
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def assert_page_headers(headers: Mapping[str, str], server: ServerProcess) -> None:
    """The policy (with the request's WebSocket origin), nosniff, no-referrer and
    revalidation on every file (``headers`` is case-insensitive, as aiohttp's)."""
    assert headers["Content-Security-Policy"] == csp(f"ws://127.0.0.1:{server.port}")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["ETag"] and headers["Last-Modified"]


async def raw_get(server: ServerProcess, target: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """``GET target`` written byte for byte (no client normalizes ``..`` or ``%2e``):
    the status and the raw response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(), RECV_TIMEOUT)
    finally:
        writer.close()
    return int(response.split(b" ", 2)[1]), response


# --------------------------------------------------------------------------- the page


async def test_the_root_and_a_bare_dashboard_redirect_to_the_page(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """``/`` and ``/dashboard`` answer 302 to ``/dashboard/``, which is the index page."""
    for path in ("/", "/dashboard"):
        async with http.get(server.base_url + path, allow_redirects=False) as resp:
            assert resp.status == 302, path
            assert resp.headers["Location"] == "/dashboard/", path
    async with http.get(server.base_url + "/") as resp:
        assert resp.status == 200 and str(resp.url).endswith("/dashboard/")
        assert await resp.read() == (static_root() / "index.html").read_bytes()


async def test_every_packaged_file_is_served_as_is_with_its_type_and_headers(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """Each file of the package's ``dashboard/static`` (subdirectories too) comes back
    byte for byte with its content type (UTF-8 for text) and the policy, nosniff,
    no-referrer and revalidation headers; ``/dashboard/`` is ``index.html``."""
    files = packaged_files()
    assert static_root() / "index.html" in files
    root = static_root()
    for path in files:
        name = path.relative_to(root).as_posix()
        async with http.get(f"{server.base_url}/dashboard/{name}") as resp:
            assert resp.status == 200, name
            assert await resp.read() == path.read_bytes(), name
            if path.suffix in EXPECTED_TYPES:
                assert resp.headers["Content-Type"] == EXPECTED_TYPES[path.suffix], name
            assert_page_headers(resp.headers, server)
    async with http.get(f"{server.base_url}/dashboard/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert await resp.read() == (root / "index.html").read_bytes()
        assert_page_headers(resp.headers, server)


async def test_head_answers_the_headers_without_a_body(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """HEAD of the page has GET's status, type, length and headers, and no body."""
    async with http.head(f"{server.base_url}/dashboard/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert int(resp.headers["Content-Length"]) == (static_root() / "index.html").stat().st_size
        assert_page_headers(resp.headers, server)
        assert await resp.read() == b""


async def test_an_unchanged_file_revalidates_with_304(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """``no-cache`` makes a browser ask again each load: its ETag (or Last-Modified)
    gets a 304 with no body and the same headers; another ETag gets the file."""
    url = f"{server.base_url}/dashboard/index.html"
    async with http.get(url) as first:
        etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for conditional in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
        async with http.get(url, headers=conditional) as resp:
            assert resp.status == 304, conditional
            assert await resp.read() == b""
            assert resp.headers["ETag"] == etag
            assert_page_headers(resp.headers, server)
    async with http.get(url, headers={"If-None-Match": '"another"'}) as resp:
        assert resp.status == 200 and await resp.read()


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "target",
    [
        "/dashboard/../pyproject.toml",
        "/dashboard/%2e%2e/pyproject.toml",
        "/dashboard/%2E%2E%2Fpyproject.toml",
        "/dashboard/..%2f..%2f..%2f..%2fpyproject.toml",
        "/dashboard/%2e%2e/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
        "/dashboard/js/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
        "/dashboard/./index.html",
        "/dashboard/%2e/index.html",
        "/dashboard//etc/passwd",
        "/dashboard/%2fetc%2fpasswd",
        "/dashboard/..%5c..%5cpyproject.toml",
        "/dashboard/.hidden",
        "/dashboard/nope.js",
        "/dashboard/js/nope.js",
        "/dashboard/api/session",
        "/dashboard/__init__.py",
    ],
)
async def test_nothing_but_the_pages_files_is_served(server: ServerProcess, target: str) -> None:
    """A path that climbs out (``..`` plain or percent-encoded, backslashes), names
    ``.`` or a hidden file, starts over at ``/`` or names no file: 404 ``not_found``
    as JSON, with nothing of any file in it."""
    status, response = await raw_get(server, target)
    assert status == 404, response
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"application/json" in head and b'"error":"not_found"' in body, response
    assert b"[project]" not in response and b"root:" not in response


async def test_a_directory_is_never_listed(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """Every directory of the page (its root without the slash's index, and each
    subdirectory, with or without a slash) is not found rather than listed."""
    root = static_root()
    directories = [p for p in root.rglob("*") if p.is_dir()]
    for directory in directories:
        name = directory.relative_to(root).as_posix()
        for path in (f"/dashboard/{name}", f"/dashboard/{name}/"):
            async with http.get(server.base_url + path) as resp:
                assert resp.status == 404, path
                assert (await resp.json())["error"] == "not_found"


async def test_other_methods_are_not_allowed(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """The page is read-only: POST, PUT and DELETE on it answer 405 saying GET/HEAD."""
    for method in ("POST", "PUT", "DELETE"):
        async with http.request(method, f"{server.base_url}/dashboard/index.html") as resp:
            assert resp.status == 405, method
            assert "GET" in resp.headers["Allow"]


async def test_an_odd_host_header_stays_out_of_the_policy(server: ServerProcess) -> None:
    """The policy names the request's host as the WebSocket origin only when it is a
    plain host and port: a Host that would add a directive leaves just ``'self'``."""
    status, response = await raw_get(server, "/dashboard/", host="evil.example; script-src *")
    assert status == 200
    head = response.partition(b"\r\n\r\n")[0].decode()
    (policy,) = [line for line in head.split("\r\n") if line.lower().startswith("content-sec")]
    assert "evil" not in policy and "script-src 'self';" in policy
    assert "connect-src 'self'; base-uri" in policy


# --------------------------------------------------------------------------- public URL


@pytest.fixture(scope="module")
def public_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server behind a TLS proxy: ``SCRIBELINE_PUBLIC_URL`` is its https address."""
    env = {"SCRIBELINE_PUBLIC_URL": "https://scribe.example.com:8443/"}
    with running_server(tmp_path_factory.mktemp("public") / "data", env) as srv:
        yield srv


async def test_the_policy_names_the_public_urls_websocket_origin(
    http: aiohttp.ClientSession, public_server: ServerProcess
) -> None:
    """With a public URL the page's sockets go there: ``connect-src`` names its
    ``wss://`` origin, whatever host the request used."""
    async with http.get(f"{public_server.base_url}/dashboard/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Security-Policy"] == csp("wss://scribe.example.com:8443")


async def test_an_https_public_url_gives_bots_wss_urls(
    http: aiohttp.ClientSession, public_server: ServerProcess
) -> None:
    """The public URL names one server in either form: an ``https://`` one gives a
    bot's WebSocket URLs as ``wss://`` on its host, never ``https://`` (no client
    can open those) and never the request's own host."""
    public_server.cli("orgs", "create", "proxied")
    key = public_server.create_key("proxied", "read,write")
    body = {"meeting_url": "https://meet.example.com/abc", "bot_name": "Notetaker"}
    async with http.post(
        f"{public_server.base_url}/v1/bots",
        json=body | {"transcription_model": "realtime"},
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        assert resp.status == 201, await resp.text()
        bot = await resp.json()
    base = f"wss://scribe.example.com:8443/v1/bots/{bot['id']}/"
    urls = [bot[f] for f in ("websocket_url", "websocket_read_only_url", "producer_url")]
    assert all(url.startswith(base) for url in urls), urls
