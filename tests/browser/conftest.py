"""Fixtures: one Chromium for the session, one dashboard server, an organization per test.

Chromium (``scripts/ensure-services``) and Playwright (the ``test`` extra) are
installed by ``make test``; when either is missing the tests skip, and under
``CI=true`` they fail (``tests.services.require``). Every test module runs on
the session's event loop (``pytestmark``), since the browser is shared.

A test fails if one of its pages logged a console error, threw, violated
the content security policy or opened a dialog, unless the test allowed
that message (``console.allow``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.helpers import Api, ServerProcess, running_server
from tests.services import require

from .chromium import CHROMIUM, CHROMIUM_ARGS

if TYPE_CHECKING:
    from playwright.async_api import Browser

    from .pages import Console, Dashboard, MakeOrg, OpenDashboard, Org

HAS_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None
#: Campaign progress every 0.2 s instead of 1 s, so progress bars move within a test.
DASHBOARD_ENV = {"SCRIBELINE_CAMPAIGN_PROGRESS_INTERVAL": "0.2"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    result = yield
    console = getattr(item, "funcargs", {}).get("console")
    if console is not None:
        problems = console.unexpected()
        assert not problems, "the page reported problems:\n" + "\n".join(problems)
    return result


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, for the whole session."""
    require("Playwright for Python", HAS_PLAYWRIGHT)
    require(f"Chromium ({CHROMIUM})", CHROMIUM.exists())
    from playwright.async_api import async_playwright, expect

    # A shared 2-core machine: give the page time; a test's own deadlines stay strict.
    expect.set_options(timeout=10_000)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


@pytest.fixture(scope="session")
def dash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server the dashboard tests share (each test has its own organization)."""
    with running_server(tmp_path_factory.mktemp("dashboard") / "data", DASHBOARD_ENV) as srv:
        yield srv


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest.fixture
def server(dash_server: ServerProcess) -> ServerProcess:
    """The server a test's organizations and pages use (override to use another)."""
    return dash_server


@pytest.fixture
def make_org(server: ServerProcess, http: aiohttp.ClientSession) -> MakeOrg:
    """Makes organizations (named, or with a fresh name) with the admin CLI on ``server``."""
    from .pages import new_org

    return lambda name=None: new_org(server, lambda key: Api(http, server, key), name)


@pytest.fixture
def org(make_org: MakeOrg) -> Org:
    """The test's own organization."""
    return make_org()


@pytest.fixture
def console() -> Console:
    require("Playwright for Python", HAS_PLAYWRIGHT)
    from .pages import Console

    return Console()


@pytest_asyncio.fixture(loop_scope="session")
async def open_dashboard(
    browser: Browser, server: ServerProcess, console: Console
) -> AsyncIterator[OpenDashboard]:
    """Opens a dashboard tab in a fresh browser context (no cookies), signed in with a
    link from ``scribeline dashboard`` unless ``sign_in=False``."""
    from .pages import Dashboard, sign_in_link

    contexts: list[Any] = []

    async def open_one(
        org: Org,
        *,
        read_only: bool = False,
        sign_in: bool = True,
        viewport: dict[str, int] | None = None,
    ) -> Dashboard:
        context = await browser.new_context(viewport=viewport or {"width": 1280, "height": 720})
        contexts.append(context)
        await console.prepare(context)
        page = await context.new_page()
        console.watch(page)
        dashboard = Dashboard(page, server, console)
        if sign_in:
            await dashboard.sign_in(sign_in_link(server, org.name, read_only=read_only))
        return dashboard

    yield open_one
    for context in contexts:
        await context.close()
