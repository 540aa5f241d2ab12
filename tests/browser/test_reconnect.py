"""The page across a server restart: reconnecting while down, live after, no line twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.helpers import ServerProcess, new_sid, transcript

from .pages import SERVER_DOWN, Console, OpenDashboard, Org, WebSocketRoute, expect, sign_in_link

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def restart_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own, since the test stops it."""
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("restart") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(restart_server: ServerProcess) -> ServerProcess:
    return restart_server


@dataclass
class Gate:
    """The page's org stream through ``page.route_web_socket``: passed to the server while
    open; while shut, each connection is closed at once, as by a server still away. It
    keeps the page away until the test has changed what it should find on its return."""

    open: bool = True

    async def handle(self, ws: WebSocketRoute) -> None:
        if self.open:
            ws.connect_to_server()
        else:
            await ws.close(code=1013, reason="kept away by the test")


async def test_the_page_reconnects_after_a_restart_without_a_duplicate_line(
    open_dashboard: OpenDashboard, org: Org, restart_server: ServerProcess, console: Console
) -> None:
    """Stopping the server shows "reconnecting" in both tabs; once the same server is back
    on the same port and data directory they are live again, the call view has every line
    (before, during the reconnect and after) exactly once in seq order, and the grid, kept
    away until then, has dropped the call that ended while it was away and shows the one
    created meanwhile (what the stream never told it, its snapshot does)."""
    console.allow(SERVER_DOWN)
    sid, ending = new_sid(), new_sid()
    for call in (sid, ending):
        await org.api.create_call(call, status="in-progress")
    seqs = [
        await org.api.post_transcript(sid, transcript(f"before the restart {n}", speaker="user"))
        for n in range(3)
    ]
    gate = Gate()
    grid = await open_dashboard(org, sign_in=False)
    await grid.page.route_web_socket("**/v1/events", gate.handle)
    await grid.sign_in(sign_in_link(restart_server, org.name))
    await expect(grid.rows).to_have_count(2)
    view = await grid.new_tab(f"#/calls/{sid}")
    await expect(view.lines).to_have_count(3)

    gate.open = False
    restart_server.stop()
    await grid.expect_state("reconnecting")
    await view.expect_state("reconnecting")
    restart_server.start()
    # While the grid is kept away (the call view comes back on its own backoff).
    seqs += [
        await org.api.post_transcript(sid, transcript(f"while away {n}", speaker="assistant"))
        for n in range(2)
    ]
    newcomer = new_sid()
    await org.api.create_call(newcomer, status="ringing")
    await org.api.post_status(ending, "completed")
    await grid.expect_state("reconnecting")
    gate.open = True

    await grid.expect_state("live")
    await view.expect_state("live")
    last = "after the reconnect"
    seqs.append(await org.api.post_transcript(sid, transcript(last, speaker="user")))

    await expect(view.line(seqs[-1]).locator(".text")).to_have_text(last)
    await expect(view.lines).to_have_count(len(seqs))
    assert await view.seqs_shown() == seqs

    await expect(grid.row(ending)).to_have_count(0)
    await expect(grid.row(sid)).to_have_count(1)
    await expect(grid.row(sid).locator(".latest .text")).to_have_text(last)
    await expect(grid.row(newcomer)).to_have_count(1)
    await expect(grid.rows).to_have_count(2)
    await expect(grid.page.locator("#calls")).to_have_attribute("data-count", "2")
