"""The dashboard as a test drives it: Chromium, sign-in links from the CLI, the page's console.

Everything goes through real processes: a ``scribeline serve`` subprocess
(:class:`~tests.integration.helpers.ServerProcess`), the admin CLI for
organizations, keys and sign-in links, and Debian's ``/usr/bin/chromium``
driven by Playwright (``executable_path``; ``playwright install`` cannot
download a browser here). Selectors are the page's DOM contract
(ids and data attributes: ``#connection[data-state]``, ``#calls-table tbody
tr[data-call-sid]``, ``#transcript li[data-seq]``, ...), nothing else.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tests.integration.helpers import Api, ServerProcess

try:
    from playwright.async_api import (
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Locator,
        Page,
        Request,
        Route,
        WebSocket,
        WebSocketRoute,
        expect,
    )
except ImportError:  # the `test` extra pins it; `make test` installs it
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise
    pytest.skip("Playwright for Python is not installed (make install)", allow_module_level=True)

__all__ = [
    "MARKUP_TAGS",
    "SERVER_DOWN",
    "UNAUTHORIZED",
    "Console",
    "Dashboard",
    "MakeOrg",
    "OpenDashboard",
    "Org",
    "Route",
    "WebSocket",
    "WebSocketRoute",
    "expect",
    "expect_no_markup_made",
    "markup",
    "new_org",
    "sign_in_link",
]

LINK_RE = re.compile(r"(http://127\.0\.0\.1:\d+/dashboard/#code=(scd_[A-Za-z0-9_-]+))")
#: What Chromium logs by itself for a refused request (a 401 the page expects and handles).
UNAUTHORIZED = r"status of 401"
#: What Chromium logs while the server is down (the page retries with backoff).
SERVER_DOWN = r"ERR_CONNECTION_REFUSED|WebSocket connection to .* failed"

#: Elements that markup in data would make if the page parsed it (the page makes none of
#: them itself inside a view; the header's logo is an img, so scopes stay inside ``main``).
MARKUP_TAGS = ("img", "script", "svg", "iframe", "b", "i")

# Reported as a console error, so a violation fails the test like any other error.
_CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + e.blockedURI);
});
"""


def markup(label: str) -> str:
    """Text that is HTML: parsed, it would make an ``img`` and an ``svg`` (whose handlers
    open dialogs), a ``b`` and a ``script`` (which sets ``window.__pwned``). ``label`` tells
    fields apart; the whole fits a bot's name (100 characters) for labels up to 11."""
    return (
        f"<img src=x onerror=alert(1)><b>{label}</b>"
        "<script>window.__pwned=1</script><svg onload=alert(2)>"
    )


async def expect_no_markup_made(page: Page, *scopes: str) -> None:
    """No element of :data:`MARKUP_TAGS` inside ``scopes`` and no script of the data ran
    (a dialog would fail the test through :class:`Console`)."""
    for scope in scopes:
        made = page.locator(", ".join(f"{scope} {tag}" for tag in MARKUP_TAGS))
        await expect(made).to_have_count(0)
    assert await page.evaluate("() => window.__pwned") is None


OpenDashboard = Callable[..., Awaitable["Dashboard"]]
MakeOrg = Callable[..., "Org"]


@dataclass
class Org:
    """An organization made with the admin CLI, and its read-write REST client."""

    name: str
    key: str
    api: Api


def new_org(server: ServerProcess, api: Callable[[str], Api], name: str | None = None) -> Org:
    """A fresh organization (its own live calls, so tests never see each other's)."""
    name = name or f"org-{uuid.uuid4().hex[:8]}"
    server.cli("orgs", "create", name)
    key = server.create_key(name, "read,write")
    return Org(name, key, api(key))


def sign_in_link(server: ServerProcess, org: str, *, read_only: bool = False) -> str:
    """A one-time sign-in link printed by ``scribeline dashboard --org ORG``.

    ``--url`` because the CLI cannot know the port the server picked (``--port 0``).
    """
    args = ["dashboard", "--org", org, "--url", server.base_url]
    if read_only:
        args.append("--read-only")
    out = server.cli(*args)
    match = LINK_RE.search(out)
    assert match, f"scribeline dashboard printed no sign-in link: {out!r}"
    return match.group(1)


@dataclass
class Console:
    """Console errors, uncaught exceptions, CSP violations and dialogs of a test's pages.

    The conftest fails a test that leaves any problem not matched by a pattern
    given to :meth:`allow` (Chromium logs a refused request or a failed
    WebSocket by itself; tests that cause those on purpose allow them).
    """

    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, *patterns: str) -> None:
        self.allowed += [re.compile(p) for p in patterns]

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("dialog", self._on_dialog)

    async def prepare(self, context: BrowserContext) -> None:
        await context.add_init_script(_CSP_WATCH)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "assert"):
            where = msg.location.get("url", "")
            self.problems.append(f"console.{msg.type}: {msg.text} ({where})")

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def unexpected(self) -> list[str]:
        found = [p for p in self.problems if not any(a.search(p) for a in self.allowed)]
        return found + [f"dialog {d}" for d in self.dialogs]


_APPEAR = """([key, selector]) => {
  window.__appear = window.__appear || {};
  window.__appear[key] = new Promise((resolve) => {
    const check = () => {
      if (document.querySelector(selector)) { observer.disconnect(); resolve(Date.now()); }
    };
    const observer = new MutationObserver(check);
    observer.observe(document, {childList: true, subtree: true, attributes: true});
    check();
  });
}"""


class Dashboard:
    """One tab of the dashboard, and the access tokens it sent."""

    def __init__(self, page: Page, server: ServerProcess, console: Console) -> None:
        self.page = page
        self.server = server
        self.console = console
        self.tokens: list[str] = []
        page.on("request", self._on_request)

    def _on_request(self, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer ") and request.url.startswith(self.server.base_url):
            self.tokens.append(auth.removeprefix("Bearer "))

    @property
    def access_token(self) -> str:
        """The newest access token the page sent on a REST request."""
        assert self.tokens, "the page has sent no authenticated request yet"
        return self.tokens[-1]

    # -- the page's parts (spec section 3) -----------------------------------

    @property
    def connection(self) -> Locator:
        return self.page.locator("#connection")

    def row(self, sid: str) -> Locator:
        return self.page.locator(f'#calls-table tbody tr[data-call-sid="{sid}"]')

    @property
    def rows(self) -> Locator:
        return self.page.locator("#calls-table tbody tr[data-call-sid]")

    @property
    def lines(self) -> Locator:
        return self.page.locator("#transcript li")

    def line(self, seq: int) -> Locator:
        return self.page.locator(f'#transcript li[data-seq="{seq}"]')

    # -- actions --------------------------------------------------------------

    async def sign_in(self, link: str) -> None:
        """Open a sign-in link and wait until the org stream is live."""
        await self.page.goto(link)
        await self.expect_state("live")

    async def expect_state(self, state: str) -> None:
        await expect(self.connection).to_have_attribute("data-state", state)

    async def new_tab(self, route: str = "#/calls") -> Dashboard:
        """Another tab of the same browser (the session cookie signs it in)."""
        page = await self.page.context.new_page()
        self.console.watch(page)
        tab = Dashboard(page, self.server, self.console)
        await page.goto(f"{self.server.base_url}/dashboard/{route}")
        await tab.expect_state("live")
        return tab

    async def watch_for(self, selector: str) -> str:
        """Start noting (in the page) when ``selector`` first matches; a key for
        :meth:`appeared_at`. Install it before causing the change."""
        key = uuid.uuid4().hex
        await self.page.evaluate(_APPEAR, [key, selector])
        return key

    async def appeared_at(self, key: str) -> float:
        """The page's wall clock (ms since the epoch) when the watched selector matched."""
        at: float = await self.page.evaluate("(key) => window.__appear[key]", key)
        return at

    async def go(self, route: str) -> None:
        """Follow a hash route (``#/calls/<sid>``) as a link in the page would."""
        await self.page.evaluate("(route) => { location.hash = route; }", route)

    async def show_call(self, sid: str) -> None:
        await self.go(f"#/calls/{sid}")
        await expect(self.page.locator("#call-view")).to_have_attribute("data-call-sid", sid)
        await expect(self.page.locator("#call-view")).to_be_visible()

    async def seqs_shown(self) -> list[int]:
        """The ``data-seq`` of every final line in the call view, in page order."""
        seqs: list[str] = await self.page.locator("#transcript li[data-seq]").evaluate_all(
            "(lis) => lis.map((li) => li.dataset.seq)"
        )
        return [int(s) for s in seqs]

    async def horizontal_overflow(self) -> int:
        """How many CSS pixels the page is wider than its viewport (0: no horizontal scroll)."""
        overflow: int = await self.page.evaluate(
            "() => Math.max(document.documentElement.scrollWidth,"
            " document.body.scrollWidth) - document.documentElement.clientWidth"
        )
        return overflow
