"""Dashboard sign-in (docs/protocol.md "Dashboard sign-in"): a link from the CLI, the
session cookie, access and captions tokens, sign-out, and the Origin checks, against
a real server over real sockets, the CLI run as a subprocess on its data directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from scribeline.logs import REDACTED
from scribeline.sessions import issue_code
from scribeline.storage import open_storage
from scribeline.tokens import LEEWAY_SECONDS

from .helpers import (
    RECV_TIMEOUT,
    Api,
    ServerProcess,
    Tenant,
    assert_timestamp,
    expect_refusal,
    new_sid,
    open_live,
    recv_json,
    running_server,
)

#: The access log on, and every logger at DEBUG: what could leak, would.
ENV = {"SCRIBELINE_ACCESS_LOG": "true", "SCRIBELINE_LOG_LEVEL": "DEBUG"}
CLI_TIMEOUT = 60.0
LINK_RE = re.compile(r"^(https?://[^/]+)/dashboard/#code=(scd_[A-Za-z0-9_-]{43})$")
EXPIRY_RE = re.compile(r"until (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")
ENDPOINTS = [
    ("POST", "/dashboard/api/session"),
    ("POST", "/dashboard/api/token"),
    ("DELETE", "/dashboard/api/session"),
    ("POST", "/dashboard/api/captions"),
]
COMMAND = (sys.executable, "-m", "scribeline", "dashboard")


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("dashboard") / "data", ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def org_a(dash: ServerProcess) -> Tenant:
    return dash.create_tenant("dash-a")


@pytest.fixture(scope="module")
def org_b_key(dash: ServerProcess) -> str:
    """A read-write key of a second organization."""
    dash.cli("orgs", "create", "dash-b")
    return dash.create_key("dash-b", "read,write")


def issue(
    server: ServerProcess,
    org: str,
    *flags: str,
    env: dict[str, str] | None = None,
    base: str | None = None,
) -> tuple[str, str]:
    """Run ``scribeline dashboard`` on the server's data directory: (its stdout, the code).
    The link must point at ``base``: by default the server, given as ``--url``."""
    where = str(server.data_dir)
    if base is None:
        base, flags = server.base_url, (*flags, "--url", server.base_url)
    result = subprocess.run(
        [*COMMAND, "--org", org, *flags, "--data-dir", where],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SCRIBELINE_")},
            **(env or {}),
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    match = LINK_RE.match(result.stdout.strip().splitlines()[-1])
    assert match is not None, f"the link is not alone on the last line: {result.stdout!r}"
    assert match.group(1) == base
    return result.stdout, match.group(2)


@dataclass
class Answer:
    status: int
    body: Any
    headers: CIMultiDict[str]
    cookies: SimpleCookie

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Page:
    """What the dashboard page does over HTTP: its Origin (the server's, unless it is
    served from ``origin``), and the cookie it was given."""

    def __init__(
        self, http: aiohttp.ClientSession, server: ServerProcess, origin: str | None = None
    ) -> None:
        self.http = http
        self.server = server
        self.origin = origin or server.base_url
        self.cookie: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        origin: str | None = "",
        cookie: str | None = "",
        raw: tuple[str, str] | None = None,
    ) -> Answer:
        """``origin`` and ``cookie`` default to the page's own; None sends none.
        ``raw``: a body of another type instead, (content type, text)."""
        sent: dict[str, str] = {}
        origin = self.origin if origin == "" else origin
        cookie = self.cookie if cookie == "" else cookie
        if origin is not None:
            sent["Origin"] = origin
        if cookie is not None:
            sent["Cookie"] = f"scribeline_session={cookie}"
        data = None
        if body is not None:
            data = json.dumps(body)
            sent["Content-Type"] = "application/json"
        if raw is not None:
            sent["Content-Type"], data = raw
        url = self.server.base_url + path
        async with self.http.request(method, url, data=data, headers=sent) as resp:
            text = await resp.text()
            jar: SimpleCookie = SimpleCookie()
            for value in resp.headers.getall("Set-Cookie", []):
                jar.load(value)
            body = json.loads(text) if text else None
            return Answer(resp.status, body, CIMultiDict(resp.headers), jar)

    async def sign_in(self, code: str) -> dict[str, Any]:
        answer = await self.call("POST", "/dashboard/api/session", {"code": code})
        assert answer.status == 201, answer.body
        morsel = answer.cookies["scribeline_session"]
        assert bool(morsel["secure"]) == self.origin.startswith("https://"), morsel
        self.cookie = morsel.value
        assert isinstance(answer.body, dict)
        return answer.body

    async def refresh(self) -> Answer:
        return await self.call("POST", "/dashboard/api/token")


def refused(answer: Answer, status: int, error: str) -> None:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.body["error"] == error, answer.body
    assert answer.header("Cache-Control") == "no-store"


async def test_a_cli_link_signs_in_once(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """The CLI prints a one-time link (stdout only); its code starts a session once:
    a SessionBody, the HttpOnly SameSite=Strict cookie scoped to /dashboard/api/,
    never cached; the same code again is 401."""
    out, code = issue(dash, org_a.org)
    assert f"{org_a.org} (full access)" in out and "It works once, until" in out
    page = Page(http, dash)
    before = time.time()
    answer = await page.call("POST", "/dashboard/api/session", {"code": code})
    assert answer.status == 201, answer.body
    assert answer.header("Cache-Control") == "no-store"
    assert answer.header("Content-Type") == "application/json"
    body = answer.body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert body["access_token"].count(".") == 2
    assert body["read_only"] is False and body["scopes"] == ["read", "write"]
    assert body["organization"]["name"] == org_a.org and body["organization"]["id"] >= 1
    assert_timestamp(body["expires_at"])
    assert_timestamp(body["session_expires_at"])
    ends = datetime.fromisoformat(body["session_expires_at"]).timestamp()
    assert before + 28_800 - 2 <= ends <= time.time() + 28_800 + 1

    raw = answer.header("Set-Cookie")
    assert raw is not None
    morsel = answer.cookies["scribeline_session"]
    assert re.fullmatch(r"scs_[A-Za-z0-9_-]{43}", morsel.value)
    assert morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/dashboard/api/" and morsel["max-age"] == "28800"
    assert not morsel["secure"] and not morsel["domain"]  # http here

    again = await page.call("POST", "/dashboard/api/session", {"code": code})
    refused(again, 401, "authentication_failed")
    assert again.header("Set-Cookie") is None


async def test_behind_a_tls_proxy_the_public_url_is_the_origin(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With SCRIBELINE_PUBLIC_URL (a wss:// one) the CLI's link, the only accepted
    Origin and the captions link are its https:// form, and the cookie is Secure; the
    request's own scheme and Host are then refused as an origin."""
    public = {"SCRIBELINE_PUBLIC_URL": "wss://scribe.example.com/"}
    with running_server(tmp_path / "data", public) as server:
        server.cli("orgs", "create", "proxied")
        key = server.create_key("proxied", "read,write")
        sid = new_sid()
        await Api(http, server, key).create_call(sid)
        _, code = issue(server, "proxied", env=public, base="https://scribe.example.com")
        page = Page(http, server, origin="https://scribe.example.com")
        own = await page.call(
            "POST", "/dashboard/api/session", {"code": code}, origin=server.base_url
        )
        refused(own, 403, "forbidden")
        body = await page.sign_in(code)
        answer = await page.call("POST", "/dashboard/api/session", {"code": code})
        refused(answer, 401, "authentication_failed")  # the code was used above
        captions = await page.call("POST", "/dashboard/api/captions", {"call_sid": sid})
        assert captions.status == 201, captions.body
        assert captions.body["url"].startswith(
            f"https://scribe.example.com/dashboard/captions.html#call={sid}&token="
        )
        seen = [code, page.cookie, body["access_token"], captions.body["token"]]
        signed_out = await page.call("DELETE", "/dashboard/api/session")
        assert signed_out.cookies["scribeline_session"]["secure"]
        assert not any(secret and secret in server.stderr_text() for secret in seen)


async def test_a_read_only_link_and_an_unknown_code(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """--read-only gives a read-only session; a code never issued is 401 like a used one."""
    out, code = issue(dash, org_a.org, "--read-only")
    assert "(read-only)" in out
    body = await Page(http, dash).sign_in(code)
    assert body["read_only"] is True and body["scopes"] == ["read"]
    unknown = await Page(http, dash).call(
        "POST", "/dashboard/api/session", {"code": "scd_" + "A" * 43}
    )
    refused(unknown, 401, "authentication_failed")


async def test_an_expired_code_is_refused(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """A code past its expiry is refused like an unknown one, while a code stored the
    same way and still valid signs in: the server holds each code to its expiry by its
    own clock. Both are stored as ``scribeline dashboard`` stores them (the expired one
    issued two seconds ago with a one-second life), so nothing waits for time to pass;
    the command itself prints the expiry SCRIBELINE_DASHBOARD_CODE_TTL gives."""
    before = time.time()
    out, _ = issue(dash, org_a.org, env={"SCRIBELINE_DASHBOARD_CODE_TTL": "1"})
    match = EXPIRY_RE.search(out)
    assert match is not None and "(in 1 seconds)" in out, out
    expiry = datetime.fromisoformat(match.group(1)).timestamp()
    assert before + 1 - 0.01 <= expiry <= time.time() + 1, (before, expiry)

    storage = await open_storage("", dash.data_dir)
    try:
        org = await storage.get_org(org_a.org)
        assert org is not None
        now = time.time()
        expired = await issue_code(storage, org.id, read_only=False, ttl_seconds=1, now=now - 2)
        valid = await issue_code(storage, org.id, read_only=False, ttl_seconds=60, now=now)
    finally:
        await storage.close()
    answer = await Page(http, dash).call("POST", "/dashboard/api/session", {"code": expired.code})
    refused(answer, 401, "authentication_failed")
    await Page(http, dash).sign_in(valid.code)


async def test_every_bad_code_gets_one_answer(
    http: aiohttp.ClientSession, dash: ServerProcess
) -> None:
    """A code that is too long, too short, empty or of another kind is refused exactly
    like an unknown or used one (401 authentication_failed), never with a validation
    error that would tell a malformed code from a wrong one."""
    for code in (
        "scd_" + "A" * 125,  # one past the longest secret the service looks up
        "scd_" + "A" * 5000,
        "scd_",
        "",
        "scs_" + "A" * 43,
        "scl_" + "A" * 43,
        "not a code",
    ):
        answer = await Page(http, dash).call("POST", "/dashboard/api/session", {"code": code})
        refused(answer, 401, "authentication_failed")
        assert answer.header("Set-Cookie") is None


async def test_requests_from_another_origin_or_none_are_refused_everywhere(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant, api_a_dash: Api
) -> None:
    """Every endpoint answers 403 forbidden to a wrong, opaque or missing Origin even
    with a valid cookie and body, and does nothing: the code is not consumed, the
    session not ended."""
    page = Page(http, dash)
    await page.sign_in(issue(dash, org_a.org)[1])
    _, fresh = issue(dash, org_a.org)
    sid = new_sid()
    await api_a_dash.create_call(sid)
    bodies = {
        "/dashboard/api/session": {"code": fresh},
        "/dashboard/api/token": None,
        "/dashboard/api/captions": {"call_sid": sid},
    }
    port = dash.port
    for origin in (
        None,
        "null",
        "http://evil.example",
        f"http://127.0.0.1:{port + 1}",
        f"https://127.0.0.1:{port}",
        f"http://localhost:{port}",
    ):
        for method, path in ENDPOINTS:
            body = bodies[path] if method == "POST" else None
            answer = await page.call(method, path, body, origin=origin)
            refused(answer, 403, "forbidden")
            assert answer.body["message"] == "Cross-origin request refused"
            assert answer.header("Set-Cookie") is None
    assert (await page.refresh()).status == 200
    await Page(http, dash).sign_in(fresh)
    # The origin compares by scheme, host and port: the same, spelt otherwise, passes.
    spelt = await page.call("POST", "/dashboard/api/token", origin=f"HTTP://127.0.0.1:{port}")
    assert spelt.status == 200, spelt.body


async def test_post_bodies_must_be_json(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """A form or text body is refused (what a cross-site form could send); the code is
    left unused."""
    _, code = issue(dash, org_a.org)
    page = Page(http, dash)
    for kind, data in (
        ("application/x-www-form-urlencoded", f"code={code}"),
        ("text/plain", json.dumps({"code": code})),
    ):
        answer = await page.call("POST", "/dashboard/api/session", raw=(kind, data))
        refused(answer, 422, "invalid_request")
        assert "application/json" in answer.body["message"]
    await page.sign_in(code)


async def test_refresh_works_with_the_cookie_only(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """POST /dashboard/api/token with the cookie gives a new access token of the same
    session; without a cookie, or with a made-up one, 401."""
    page = Page(http, dash)
    first = await page.sign_in(issue(dash, org_a.org)[1])
    answer = await page.refresh()
    assert answer.status == 200, answer.body
    assert answer.header("Cache-Control") == "no-store"
    body = answer.body
    assert body["access_token"] != first["access_token"]
    assert body["session_expires_at"] == first["session_expires_at"]
    assert body["organization"] == first["organization"] and body["expires_in"] == 600
    assert answer.header("Set-Cookie") is None
    refused(
        await page.call("POST", "/dashboard/api/token", cookie=None), 401, "authentication_failed"
    )
    made_up = await page.call("POST", "/dashboard/api/token", cookie="scs_" + "B" * 43)
    refused(made_up, 401, "authentication_failed")
    too_long = await page.call("POST", "/dashboard/api/token", cookie="scs_" + "C" * 500)
    refused(too_long, 401, "authentication_failed")


@pytest.fixture
def api_a_dash(http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant) -> Api:
    return Api(http, dash, org_a.rw)


async def test_access_tokens_work_as_bearer_and_subprotocol_within_their_scopes(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """A full session's token lists and creates calls and opens the event stream as the
    burki-token subprotocol; a read-only session's token reads but gets 403 on a write."""
    full = (await Page(http, dash).sign_in(issue(dash, org_a.org)[1]))["access_token"]
    api = Api(http, dash, full)
    assert (await api.request("GET", "/v1/calls")).status == 200
    await api.create_call(new_sid())
    protocol = Subprotocol(f"burki-token-{full}")
    async with connect(
        f"{dash.ws_base}/v1/events", subprotocols=[protocol], open_timeout=RECV_TIMEOUT
    ) as ws:
        assert ws.subprotocol == protocol
        assert (await recv_json(ws))["type"] == "connection_established"

    read_only = await Page(http, dash).sign_in(issue(dash, org_a.org, "--read-only")[1])
    reader = Api(http, dash, read_only["access_token"])
    assert (await reader.request("GET", "/v1/calls")).status == 200
    denied = await reader.request("POST", "/v1/calls", json_body={"call_sid": new_sid()})
    assert denied.status == 403 and denied.body["error"] == "forbidden", denied.text


async def test_sign_out_ends_the_session_and_every_token_of_it_at_once(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """DELETE clears the cookie (Max-Age=0) and revokes the session: the refresh fails
    and an access token that worked a moment ago fails on its very next request; signing
    out again, or with no session, is 204 all the same."""
    page = Page(http, dash)
    token = (await page.sign_in(issue(dash, org_a.org)[1]))["access_token"]
    api = Api(http, dash, token)
    assert (await api.request("GET", "/v1/calls")).status == 200  # now cached by the server
    answer = await page.call("DELETE", "/dashboard/api/session")
    assert answer.status == 204 and answer.header("Cache-Control") == "no-store"
    cleared = answer.cookies["scribeline_session"]
    assert cleared.value == "" and cleared["max-age"] == "0"
    assert cleared["path"] == "/dashboard/api/" and cleared["httponly"]
    gone = await api.request("GET", "/v1/calls")
    assert gone.status == 401 and gone.body["error"] == "authentication_failed", gone.text
    refused(await page.refresh(), 401, "authentication_failed")
    assert (await page.call("DELETE", "/dashboard/api/session")).status == 204
    assert (await page.call("DELETE", "/dashboard/api/session", cookie=None)).status == 204


async def test_the_session_secret_is_no_bearer_token(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """The cookie's secret is refused over REST and on a WebSocket, however it is sent."""
    page = Page(http, dash)
    await page.sign_in(issue(dash, org_a.org)[1])
    secret = page.cookie
    assert secret is not None
    answer = await Api(http, dash, secret).request("GET", "/v1/calls")
    assert answer.status == 401 and answer.body["error"] == "authentication_failed"
    for method in ("header", "subprotocol"):
        msg, _ = await expect_refusal(dash, "/v1/events", secret, method=method)
        assert msg["error"] == "authentication_failed", msg


async def test_a_captions_link_opens_only_its_call(
    http: aiohttp.ClientSession,
    dash: ServerProcess,
    org_a: Tenant,
    org_b_key: str,
    api_a_dash: Api,
) -> None:
    """A read-only session gets a captions link for one of its calls: a read token
    that opens that call's live transcript and nothing else (another call of the
    organization, the event stream); another organization's call is 404."""
    mine, other, theirs = new_sid(), new_sid(), new_sid()
    await api_a_dash.create_call(mine)
    await api_a_dash.create_call(other)
    await Api(http, dash, org_b_key).create_call(theirs)
    page = Page(http, dash)
    await page.sign_in(issue(dash, org_a.org, "--read-only")[1])
    before = time.time()
    answer = await page.call("POST", "/dashboard/api/captions", {"call_sid": mine})
    assert answer.status == 201, answer.body
    assert answer.header("Cache-Control") == "no-store"
    token = answer.body["token"]
    assert answer.body["url"] == (
        f"{dash.base_url}/dashboard/captions.html#call={mine}&token={token}"
    )
    expires = datetime.fromisoformat(answer.body["expires_at"]).timestamp()
    assert before + 14_400 - 2 <= expires <= time.time() + 14_400 + 1

    ws, _ = await open_live(dash, mine, token, method="subprotocol")
    await ws.close()
    msg, _ = await expect_refusal(dash, f"/live-transcript/{other}", token, method="subprotocol")
    assert msg["error"] == "forbidden", msg
    msg, _ = await expect_refusal(dash, "/v1/events", token, method="subprotocol")
    assert msg["error"] == "forbidden", msg
    denied = await Api(http, dash, token).request("GET", "/v1/calls")
    assert denied.status == 403, denied.body

    foreign = await page.call("POST", "/dashboard/api/captions", {"call_sid": theirs})
    refused(foreign, 404, "not_found")
    unknown = await page.call("POST", "/dashboard/api/captions", {"call_sid": new_sid()})
    refused(unknown, 404, "not_found")
    signed_out = await page.call("POST", "/dashboard/api/captions", {"call_sid": mine}, cookie=None)
    refused(signed_out, 401, "authentication_failed")


async def test_keys_list_never_shows_sessions(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """An organization with three keys and sessions (two here, more from the tests
    before) lists its three keys."""
    for _ in range(2):
        await Page(http, dash).sign_in(issue(dash, org_a.org)[1])
    lines = dash.cli("keys", "list", "--org", org_a.org).strip().splitlines()
    assert len(lines) == 3, lines
    assert all("scs_" not in line and "dashboard" not in line for line in lines), lines


async def test_signing_in_with_a_session_cookie_ends_that_session(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant
) -> None:
    """A browser that signs in again while it holds a session (a second link opened in
    it) gets a new session, and the one whose cookie it sent ends at once: its refresh
    is 401 and its access token, accepted (and cached) a moment before, is refused on
    its next request. A refused code ends nothing."""
    page = Page(http, dash)
    old = await page.sign_in(issue(dash, org_a.org)[1])
    old_cookie = page.cookie
    api = Api(http, dash, old["access_token"])
    assert (await api.request("GET", "/v1/calls")).status == 200  # now cached by the server
    wrong = await page.call("POST", "/dashboard/api/session", {"code": "scd_" + "Z" * 43})
    refused(wrong, 401, "authentication_failed")
    assert (await page.refresh()).status == 200

    new = await page.sign_in(issue(dash, org_a.org)[1])  # sends the old cookie
    assert page.cookie != old_cookie
    gone = await api.request("GET", "/v1/calls")
    assert gone.status == 401 and gone.body["error"] == "authentication_failed", gone.text
    stale = await page.call("POST", "/dashboard/api/token", cookie=old_cookie)
    refused(stale, 401, "authentication_failed")
    assert (await page.refresh()).status == 200
    assert (await Api(http, dash, new["access_token"]).request("GET", "/v1/calls")).status == 200


def _sessions(server: ServerProcess, org: str) -> dict[int, list[str]]:
    """``sessions list``: each session's fields after its id, by id."""
    lines = server.cli("sessions", "list", "--org", org).strip().splitlines()
    return {int(line.split("\t")[0]): line.split("\t")[1:] for line in lines}


async def test_operators_list_and_revoke_sessions(
    http: aiohttp.ClientSession, dash: ServerProcess
) -> None:
    """``sessions list`` shows an organization's sessions (id, created, expires, access,
    state) and none of its keys; ``sessions revoke ID`` ends one (its refresh fails at
    once), ``--all`` every active one; an id that is no session of the organization (a
    key's, an unknown one) is one line of error."""
    dash.cli("orgs", "create", "dash-ops")
    dash.create_key("dash-ops", "read")
    full, reader = Page(http, dash), Page(http, dash)
    await full.sign_in(issue(dash, "dash-ops")[1])
    await reader.sign_in(issue(dash, "dash-ops", "--read-only")[1])
    listed = _sessions(dash, "dash-ops")
    assert len(listed) == 2, listed
    first, second = sorted(listed)
    for fields in listed.values():
        assert_timestamp(fields[0])
        assert_timestamp(fields[1])
        assert fields[3] == "active", fields
    assert (listed[first][2], listed[second][2]) == ("full access", "read-only")

    out = dash.cli("sessions", "revoke", str(first), "--org", "dash-ops")
    assert out.startswith(f"Revoked dashboard session {first} of dash-ops in the data"), out
    refused(await full.refresh(), 401, "authentication_failed")
    assert _sessions(dash, "dash-ops")[first][3].startswith("revoked ")
    again = dash.cli("sessions", "revoke", str(first), "--org", "dash-ops")
    assert again.startswith(f"Dashboard session {first} of dash-ops was already revoked")

    out = dash.cli("sessions", "revoke", "--all", "--org", "dash-ops")
    assert out.startswith(f"Revoked 1 dashboard session of dash-ops (id {second}) in the")
    refused(await reader.refresh(), 401, "authentication_failed")
    key_id = dash.cli("keys", "list", "--org", "dash-ops").split("\t")[0]
    for wrong in (key_id, "999999"):
        with pytest.raises(RuntimeError, match=f"scribeline: no dashboard session {wrong} of"):
            dash.cli("sessions", "revoke", wrong, "--org", "dash-ops")


async def test_a_cached_sessions_token_dies_when_the_session_expires(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With 3-second sessions and a 60-second key cache, a session's access token that
    the server accepted (and cached) is refused from the session's end on: the cached
    row's expiry is checked on every use, although the cache entry is fresh and the
    token still inside the verifier's leeway (LEEWAY_SECONDS past its exp)."""
    env = {"SCRIBELINE_DASHBOARD_SESSION_TTL": "3", "SCRIBELINE_AUTH_CACHE_SECONDS": "60"}
    with running_server(tmp_path / "data", env) as server:
        server.cli("orgs", "create", "brief")
        body = await Page(http, server).sign_in(issue(server, "brief")[1])
        ends = datetime.fromisoformat(body["session_expires_at"]).timestamp()
        api = Api(http, server, body["access_token"])
        assert (await api.request("GET", "/v1/calls")).status == 200  # cached from here on
        while (answer := await api.request("GET", "/v1/calls")).status == 200:
            assert time.time() < ends + LEEWAY_SECONDS / 2, "accepted past the session's end"
            await asyncio.sleep(0.05)
        refused_at = time.time()
        assert answer.status == 401 and answer.body["error"] == "authentication_failed"
        assert refused_at >= ends - 0.05, (refused_at, ends)  # and not before it ended


async def test_the_server_log_holds_no_code_secret_or_token(
    http: aiohttp.ClientSession, dash: ServerProcess, org_a: Tenant, api_a_dash: Api
) -> None:
    """One whole session's credentials go through the server, its access log on and at
    DEBUG: a code (signed in with, then refused when used again), an unknown code, the
    session secret, two access tokens and a captions token. None reaches its log, not
    even masked, and no other code or session secret does either."""
    sid = new_sid()
    await api_a_dash.create_call(sid)
    _, code = issue(dash, org_a.org)
    page = Page(http, dash)
    body = await page.sign_in(code)
    refreshed = await page.refresh()
    assert refreshed.status == 200, refreshed.body
    captions = await page.call("POST", "/dashboard/api/captions", {"call_sid": sid})
    assert captions.status == 201, captions.body
    used = await Page(http, dash).call("POST", "/dashboard/api/session", {"code": code})
    refused(used, 401, "authentication_failed")
    unknown = "scd_" + "Q" * 43
    refused(
        await Page(http, dash).call("POST", "/dashboard/api/session", {"code": unknown}),
        401,
        "authentication_failed",
    )
    assert page.cookie is not None
    seen = [
        code,
        unknown,
        page.cookie,
        body["access_token"],
        refreshed.body["access_token"],
        captions.body["token"],
    ]
    assert (await page.call("DELETE", "/dashboard/api/session")).status == 204
    marker = f"/dashboard/api/session-{time.time_ns()}"  # a last request, to await its line
    assert (await page.call("GET", marker)).status in (404, 405)
    # The helpers have nothing that awaits a line of the server's log (a file, written
    # after the response): poll it, with a deadline.
    deadline = time.monotonic() + RECV_TIMEOUT
    while marker not in dash.stderr_text():
        assert time.monotonic() < deadline, "the access log never showed the last request"
        await asyncio.sleep(0.05)
    log = dash.stderr_text()
    for line in (
        '"POST /dashboard/api/session" 201',
        '"POST /dashboard/api/token" 200',
        '"POST /dashboard/api/captions" 201',
        '"DELETE /dashboard/api/session" 204',
    ):
        assert line in log, line
    leaked = [secret[:8] for secret in seen if secret in log]
    assert not leaked, f"credentials in the server log: {leaked}"
    assert REDACTED not in log  # nothing even tried to log one (the filter would hide it)
    assert not re.search(r"sc[ds]_[A-Za-z0-9_-]{8}", log)
