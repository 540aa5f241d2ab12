"""Signing in with a link from ``scribeline dashboard``, refusals, sign-out, read-only sessions."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.helpers import ServerProcess, new_sid, transcript

from .pages import (
    UNAUTHORIZED,
    Console,
    Dashboard,
    OpenDashboard,
    Org,
    Route,
    expect,
    sign_in_link,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

SESSION_COOKIE = "scribeline_session"


async def test_sign_in_exchanges_the_code_and_removes_it_from_the_address_bar(
    open_dashboard: OpenDashboard, org: Org, server: ServerProcess
) -> None:
    """A link from the CLI signs the tab in: the code leaves the address bar, the session is
    an HttpOnly cookie the page cannot read, nothing is kept in storage, the code reaches
    no server log, and a reload stays signed in (through the cookie)."""
    link = sign_in_link(server, org.name)
    code = link.split("#code=", 1)[1]
    dash = await open_dashboard(org, sign_in=False)
    page = dash.page
    await dash.sign_in(link)

    assert "code" not in page.url and code not in page.url, page.url
    assert code not in await page.evaluate("() => location.href")
    await expect(page.locator("#org-name")).to_have_text(org.name)
    await expect(page.locator("#session-role")).not_to_contain_text("read-only")
    await expect(page.locator("#signed-out")).to_be_hidden()

    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session.get("httpOnly") is True, session
    assert session.get("sameSite") == "Strict", session
    assert session.get("path") == "/dashboard/api/", session
    stored = await page.evaluate(
        "() => [document.cookie, localStorage.length, sessionStorage.length]"
    )
    assert stored == ["", 0, 0], f"the page keeps something readable: {stored}"
    assert code not in server.stderr_text(), "the sign-in code reached the server log"

    await page.reload()
    await dash.expect_state("live")
    await expect(page.locator("#org-name")).to_have_text(org.name)


async def test_the_code_leaves_the_address_bar_before_the_session_request(
    open_dashboard: OpenDashboard, org: Org, server: ServerProcess
) -> None:
    """While POST /dashboard/api/session is held by a route (the code on its way to the
    server), neither the address bar nor ``location`` has the code any more: the page
    removes it before it asks, not once the answer is in."""
    link = sign_in_link(server, org.name)
    code = link.split("#code=", 1)[1]
    dash = await open_dashboard(org, sign_in=False)
    held: list[tuple[str, str, str]] = []

    async def hold(route: Route) -> None:
        if route.request.method == "POST":
            href = await dash.page.evaluate("() => location.href")
            held.append((dash.page.url, href, route.request.post_data or ""))
        await route.continue_()

    await dash.page.route("**/dashboard/api/session", hold)
    await dash.sign_in(link)

    assert len(held) == 1, held
    address, href, body = held[0]
    assert code in body, "the held request was not this code's exchange"
    assert "code" not in address and code not in address, address
    assert "code" not in href and code not in href, href


async def test_a_used_or_bogus_code_is_refused_with_a_message(
    open_dashboard: OpenDashboard, org: Org, server: ServerProcess, console: Console
) -> None:
    """A code already used by another tab, and a made-up one, each end on the signed-out
    view with #signin-error, and the code still leaves the address bar."""
    console.allow(UNAUTHORIZED)
    link = sign_in_link(server, org.name)
    first = await open_dashboard(org, sign_in=False)
    await first.sign_in(link)

    bogus = f"{server.base_url}/dashboard/#code=scd_{'A' * 43}"
    for refused in (link, bogus):
        dash = await open_dashboard(org, sign_in=False)
        await dash.page.goto(refused)
        await expect(dash.page.locator("#signed-out")).to_be_visible()
        await expect(dash.page.locator("#signin-error")).to_be_visible()
        await expect(dash.page.locator("#signin-error")).not_to_have_text("")
        await dash.expect_state("signed-out")
        assert "code" not in dash.page.url, dash.page.url
        await expect(dash.page.locator("#org-name")).not_to_have_text(org.name)


async def test_sign_out_returns_to_signed_out_and_ends_the_session(
    open_dashboard: OpenDashboard, org: Org, console: Console
) -> None:
    """Sign-out shows #signed-out; a reload cannot refresh the session, and the access
    token the page held is refused by the API."""
    console.allow(UNAUTHORIZED)
    dash = await open_dashboard(org)
    await expect(dash.page.locator("#calls")).to_be_visible()
    token = dash.access_token
    assert (await org.api.request("GET", "/v1/calls", key=token)).status == 200

    await dash.page.locator("#sign-out").click()
    await expect(dash.page.locator("#signed-out")).to_be_visible()
    await dash.expect_state("signed-out")
    refused = await org.api.request("GET", "/v1/calls", key=token)
    assert refused.status == 401, f"a signed-out session's token still works: {refused.status}"

    await dash.page.reload()
    await expect(dash.page.locator("#signed-out")).to_be_visible()
    await dash.expect_state("signed-out")
    status = await dash.page.evaluate(
        "() => fetch('/dashboard/api/token', {method: 'POST'}).then((r) => r.status)"
    )
    assert status == 401


# Every fetch of the page with the page's (fake) clock: when it was made and answered.
_FETCH_LOG = """{
  window.__fetches = [];
  const pageFetch = window.fetch;
  window.fetch = function (input, init) {
    const made = {url: String(input), method: init?.method ?? 'GET', at: Date.now()};
    window.__fetches.push(made);
    return pageFetch.call(this, input, init).then((response) => {
      made.status = response.status;
      made.done = Date.now();
      return response;
    });
  };
}"""
#: How far either side of the 80% mark the page's clock jumps.
_MARGIN_MS = 2_000


async def _fetches(dash: Dashboard, path: str) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = await dash.page.evaluate("() => window.__fetches")
    return [f for f in made if f["url"].endswith(path)]


async def test_the_token_is_refreshed_at_80_percent_and_a_revoked_session_signs_out(
    open_dashboard: OpenDashboard, org: Org, server: ServerProcess, console: Console
) -> None:
    """With the page's clock in the test's hands (``page.clock``): no refresh until 80% of
    the access token's life, then one POST /dashboard/api/token, before the token expires;
    the page stays live and uses the new token. Once the session is revoked on the server
    (behind the page's back: no other tab tells it), the page shows #signed-out. Sixteen
    minutes of the page's time take a second or two."""
    console.allow(UNAUTHORIZED)
    dash = await open_dashboard(org, sign_in=False)
    page = dash.page
    await page.clock.install()
    await page.add_init_script(_FETCH_LOG)
    link = sign_in_link(server, org.name)
    started = time.monotonic()
    async with page.expect_response("**/dashboard/api/session") as signed_in:
        await dash.sign_in(link)
    first = await (await signed_in.value).json()
    life_ms = first["expires_in"] * 1000
    [session] = await _fetches(dash, "/dashboard/api/session")
    refresh_at = session["done"] + 0.8 * life_ms

    now = await page.evaluate("() => Date.now()")
    await page.clock.fast_forward(int(refresh_at - _MARGIN_MS - now))
    assert await _fetches(dash, "/dashboard/api/token") == [], "refreshed before 80%"
    async with page.expect_response("**/dashboard/api/token") as refreshed:
        await page.clock.fast_forward(_MARGIN_MS + _MARGIN_MS // 2)
    assert (await refreshed.value).status == 200
    second = await (await refreshed.value).json()
    [refresh] = await _fetches(dash, "/dashboard/api/token")
    assert refresh_at - _MARGIN_MS < refresh["at"] <= refresh_at + _MARGIN_MS, refresh
    assert refresh["at"] < session["done"] + life_ms, "the token expired before its refresh"
    assert second["access_token"] != first["access_token"]

    await dash.expect_state("live")
    async with page.expect_request(lambda r: "/v1/bots" in r.url) as listed:
        await dash.go("#/meetings")
    bearer = (await listed.value).headers.get("authorization")
    assert bearer == f"Bearer {second['access_token']}", "the page kept the old token"

    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    revoked = await org.api.request(
        "DELETE",
        "/dashboard/api/session",
        key=None,
        headers={
            "Origin": server.base_url,
            "Cookie": f"{SESSION_COOKIE}={cookies[SESSION_COOKIE]}",
        },
    )
    assert revoked.status == 204
    # The server closes the session's socket, and the next refresh is refused: whichever
    # reaches the page first, it ends signed out, its last token request refused.
    await page.clock.fast_forward(int(0.8 * second["expires_in"] * 1000) + _MARGIN_MS)
    await expect(page.locator("#signed-out")).to_be_visible()
    await dash.expect_state("signed-out")
    statuses = [f.get("status") for f in await _fetches(dash, "/dashboard/api/token")]
    assert statuses[0] == 200 and statuses[-1] == 401, statuses
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"{elapsed:.1f} s of real time: the page's clock did not jump"


async def test_a_read_only_session_hides_end_call_and_cannot_write(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """A read-only link shows "read-only", no #end-call, and the API refuses a write made
    with the page's own token while reads work."""
    sid = new_sid()
    await org.api.create_call(sid, status="in-progress")
    await org.api.post_transcript(sid, transcript("Can you hear me?", speaker="user"))
    dash = await open_dashboard(org, read_only=True)
    await expect(dash.page.locator("#session-role")).to_contain_text("read-only")
    await expect(dash.row(sid)).to_be_visible()
    await dash.show_call(sid)
    await expect(dash.lines).to_have_count(1)
    await expect(dash.page.locator("#end-call")).to_be_hidden()
    await expect(dash.page.locator("#captions-link")).to_be_visible()

    token = dash.access_token
    assert (await org.api.request("GET", f"/v1/calls/{sid}", key=token)).status == 200
    write = await org.api.request(
        "POST", f"/v1/calls/{sid}/status", json_body={"status": "completed"}, key=token
    )
    assert write.status == 403, f"a read-only session wrote: {write.status} {write.text}"
    assert write.body["error"] == "forbidden"


async def test_a_full_session_shows_end_call(open_dashboard: OpenDashboard, org: Org) -> None:
    """The same call view in a read-write session has #end-call (the read-only test's
    counterpart, so hiding it is the session's doing)."""
    sid = new_sid()
    await org.api.create_call(sid, status="in-progress")
    dash = await open_dashboard(org)
    await dash.show_call(sid)
    await expect(dash.page.locator("#end-call")).to_be_visible()
    await expect(dash.page.locator("#session-role")).not_to_contain_text("read-only")
