"""The org stream's heartbeat and backoff, and a failed snapshot, in Chromium.

The stale and backoff test replaces ``/v1/events`` with a silent server
(``page.route_web_socket``) and runs the page's clock with ``page.clock``:
the page's minute of silence and reconnects take about a second.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.helpers import ServerProcess, new_sid, transcript

from .pages import (
    Console,
    OpenDashboard,
    Org,
    Route,
    WebSocket,
    WebSocketRoute,
    expect,
    sign_in_link,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: ``[state, performance.now()]`` for every change of ``#connection[data-state]``
#: (an init script, so the first change is seen; the page's clock, fake or not).
_STATE_LOG = """
window.__states = [];
new MutationObserver((records) => {
  const now = performance.now();
  records.forEach((record, i) => {
    if (record.target.id !== 'connection') return;
    const next = records.slice(i + 1).find((later) => later.target === record.target);
    window.__states.push([next ? next.oldValue : record.target.dataset.state, now]);
  });
}).observe(document, {
  subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ['data-state'],
});
"""
#: When each WebSocket the page opens from now on was made and closed (``performance.now()``).
_SOCKET_LOG = """() => {
  window.__sockets = [];
  window.WebSocket = new Proxy(window.WebSocket, {
    construct(target, args) {
      const socket = Reflect.construct(target, args);
      const made = {url: String(args[0]), opened: performance.now(), closed: null};
      window.__sockets.push(made);
      socket.addEventListener('close', () => { made.closed = performance.now(); });
      return socket;
    },
  });
}"""
_CLOSED = "(n) => window.__sockets.filter((s) => s.closed !== null).length >= n"
#: The page's heartbeat (spec section 3): no message for 35 s is stale, checked each second.
STALE_MS = 35_000
CHECK_MS = 1_000
#: Backoff: 0.5 s doubling to 15 s; each delay is the nominal one minus up to half of it.
FIRST_BACKOFF_MS = 500
#: How late a timer may fire while the page's clock runs in real time between steps.
LATE_MS = 250


@dataclass
class SilentServer:
    """``/v1/events`` as a server that answers the subscriptions, so the page goes live,
    and then never says anything again (no ``pong`` either). Connections whose number is
    in ``refuse`` (the first is 1) are closed at once, as a server that is not up."""

    refuse: set[int]
    connections: int = 0
    received: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, ws: WebSocketRoute) -> None:
        async with self._arrived:
            self.connections += 1
            number = self.connections
            self._arrived.notify_all()
        if number in self.refuse:
            await ws.close(code=1013, reason="try again later")
            return

        def receive(raw: str | bytes) -> None:
            message = json.loads(raw)
            self.received.append((number, message))
            if message.get("action") == "subscribe":
                ack = {"type": "subscribed", "topic": message["topic"], "filter": message["filter"]}
                ws.send(json.dumps(ack))

        ws.on_message(receive)
        now = datetime.now(UTC).isoformat()
        ws.send(json.dumps({"type": "connection_established", "timestamp": now}))

    async def wait_for(self, number: int) -> None:
        """Until the page has opened connection ``number`` (10 s at most)."""
        try:
            async with asyncio.timeout(10), self._arrived:
                await self._arrived.wait_for(lambda: self.connections >= number)
        except TimeoutError:
            raise AssertionError(f"the page never opened connection {number}") from None


async def test_a_silent_stream_goes_stale_and_reconnects_with_backoff(
    open_dashboard: OpenDashboard, org: Org, server: ServerProcess
) -> None:
    """A stream that falls silent after the subscriptions (pings unanswered) is still live
    34 s later and stale within a second of 35 s; the page then reconnects on its own:
    attempts refused three times show "reconnecting" and come 0.25-0.5 s, 0.5-1 s, 1-2 s
    and 2-4 s apart (backoff with jitter); the fifth connection subscribes again and is
    live. About a minute of the page's time, in a couple of seconds."""
    silent = SilentServer(refuse={2, 3, 4})
    dash = await open_dashboard(org, sign_in=False)
    page = dash.page
    await page.clock.install()
    await page.add_init_script(_STATE_LOG)
    await page.route_web_socket("**/v1/events", silent.handle)
    await dash.sign_in(sign_in_link(server, org.name))
    await page.evaluate(_SOCKET_LOG)
    started = time.monotonic()

    [(state, live_at)] = await page.evaluate("() => window.__states")
    assert state == "live", state
    now = await page.evaluate("() => performance.now()")
    await page.clock.run_for(int(live_at + STALE_MS - CHECK_MS - now))
    await dash.expect_state("live")
    # Stale at most a check after 35 s; the first retry is due at most 0.5 s after that.
    await page.clock.run_for(2 * CHECK_MS + FIRST_BACKOFF_MS)
    await expect(dash.connection).not_to_have_attribute("data-state", "live")
    for attempt in (2, 3, 4, 5):
        await silent.wait_for(attempt)
        if attempt == 5:
            break
        await page.wait_for_function(_CLOSED, arg=attempt - 1)
        await page.clock.run_for(FIRST_BACKOFF_MS * 2 ** (attempt - 1))
    await dash.expect_state("live")
    elapsed = time.monotonic() - started

    states: list[tuple[str, float]] = await page.evaluate("() => window.__states")
    assert [state for state, _ in states] == ["live", "stale", "reconnecting", "live"], states
    stale_at = states[1][1]
    # The last message heard came in the task that went live, a few real ms before the log.
    assert STALE_MS - 50 <= stale_at - live_at <= STALE_MS + CHECK_MS, states
    pings = [m for n, m in silent.received if n == 1 and m == {"type": "ping"}]
    assert len(pings) >= 2, f"the page sent {len(pings)} unanswered pings: {silent.received}"
    resubscribed = {m.get("topic") for n, m in silent.received if n == 5}
    assert {"transcription", "call_status", "campaign", "meeting"} <= resubscribed

    sockets: list[dict[str, Any]] = await page.evaluate("() => window.__sockets")
    assert len(sockets) == 4, sockets
    closes = [stale_at] + [s["closed"] for s in sockets[:3]]
    delays = [s["opened"] - closed for s, closed in zip(sockets, closes, strict=True)]
    for attempt, delay in enumerate(delays):
        nominal = FIRST_BACKOFF_MS * 2**attempt
        assert nominal / 2 <= delay <= nominal + LATE_MS, f"retry {attempt + 1}: {delays}"
    assert elapsed < 20, f"{elapsed:.1f} s of real time: the page's clock did not jump"


async def test_a_failed_snapshot_is_retried_without_a_reconnect(
    open_dashboard: OpenDashboard, org: Org, server: ServerProcess, console: Console
) -> None:
    """The first GET of the live calls answers 500: the grid asks again by itself and
    fills, on the same event stream and without a change of view."""
    console.allow(r"status of 500")
    sid = new_sid()
    await org.api.create_call(sid, status="in-progress")
    await org.api.post_transcript(sid, transcript("Before the page opened."))
    dash = await open_dashboard(org, sign_in=False)
    page = dash.page
    asked: list[str] = []

    async def fail_once(route: Route) -> None:
        asked.append(route.request.url)
        if len(asked) == 1:
            body = {"error": "internal_error", "message": "Injected by the test"}
            await route.fulfill(status=500, json=body)
        else:
            await route.continue_()

    await page.route(lambda url: "/v1/calls?" in url, fail_once)
    streams: list[WebSocket] = []
    page.on("websocket", lambda ws: streams.append(ws) if "/v1/events" in ws.url else None)
    await dash.sign_in(sign_in_link(server, org.name))

    await expect(dash.row(sid).locator(".latest .text")).to_have_text("Before the page opened.")
    await expect(page.locator("#calls")).to_have_attribute("data-count", "1")
    assert len(asked) >= 2, asked
    assert len(streams) == 1, "the grid filled through a reconnect, not a retry"
    assert page.url.endswith("#/calls"), page.url
    await dash.expect_state("live")
