"""The live calls view and the call view in Chromium, fed by the real server's REST ingest."""

from __future__ import annotations

import os
import re
import struct
import time
from pathlib import Path

import pytest

from tests.integration.helpers import new_sid, transcript

from .pages import MakeOrg, OpenDashboard, Org, WebSocket, expect, expect_no_markup_made

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
SCREENSHOT_SIZE = (1280, 720)
ENDED = re.compile(r"\bended\b")
INTERIM = re.compile(r"\binterim\b")


async def test_a_new_call_appears_within_a_second_and_its_lines_follow(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """A call created over REST is in the grid less than a second after the POST began
    (the page's own clock, noted by a MutationObserver); its lines reach the grid's latest
    cell and the call view, in order, with their seqs; its duration ticks."""
    dash = await open_dashboard(org)
    sid = new_sid()
    seen = await dash.watch_for(f'#calls-table tbody tr[data-call-sid="{sid}"]')
    posted_ms = time.time() * 1000
    await org.api.create_call(sid, status="ringing", call_type="outbound")
    delay_ms = await dash.appeared_at(seen) - posted_ms
    assert delay_ms < 1000, f"the call took {delay_ms:.0f} ms to appear"

    row = dash.row(sid)
    await expect(row).to_be_visible()
    await expect(row).to_have_attribute("data-status", "ringing")
    await expect(row.locator(".status")).to_contain_text("ringing")
    await expect(row.locator(".direction")).to_contain_text("outbound")
    await expect(row.locator(f'a[href="#/calls/{sid}"]')).to_be_visible()
    await expect(dash.page.locator("#calls")).to_have_attribute("data-count", "1")
    await expect(dash.page.locator("#calls-empty")).to_be_hidden()

    await org.api.post_status(sid, "in-progress")
    await expect(row).to_have_attribute("data-status", "in-progress")
    said = [
        ("user", "Hi, I'm calling about my order."),
        ("assistant", "Sure, what is the order number?"),
    ]
    seqs = [await org.api.post_transcript(sid, transcript(t, speaker=s)) for s, t in said]
    latest = row.locator(".latest")
    await expect(latest.locator(".text")).to_have_text(said[-1][1])
    await expect(latest.locator(".speaker")).not_to_have_text("")
    await expect(latest).to_have_attribute("data-final", "true")
    ticking = await row.locator(".duration").inner_text()
    await expect(row.locator(".duration")).not_to_have_text(ticking)

    await row.locator(f'a[href="#/calls/{sid}"]').click()
    await expect(dash.page.locator("#call-view")).to_have_attribute("data-call-sid", sid)
    await expect(dash.page.locator("#call-status")).to_contain_text("in-progress")
    await expect(dash.lines.locator(".text")).to_have_text([t for _, t in said])
    assert await dash.seqs_shown() == seqs
    await expect(dash.lines.nth(0).locator(".speaker")).not_to_have_text(
        await dash.lines.nth(1).locator(".speaker").inner_text()
    )
    more = await org.api.post_transcript(sid, transcript("It's 4471.", speaker="user"))
    await expect(dash.line(more).locator(".text")).to_have_text("It's 4471.")
    assert await dash.seqs_shown() == [*seqs, more]


async def test_a_partial_is_replaced_by_its_final_in_grid_and_call_view(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """Partials of one segment show as one interim line (grid and call view) that the
    final replaces in place: no second line, no interim mark left."""
    sid = new_sid()
    await org.api.create_call(sid, status="in-progress")
    grid = await open_dashboard(org)
    await expect(grid.row(sid)).to_be_visible()
    view = await grid.new_tab(f"#/calls/{sid}")
    await expect(view.page.locator("#call-view")).to_have_attribute("data-call-sid", sid)

    segment = "seg-1"
    grid_text = grid.row(sid).locator(".latest .text")
    for partial in ("I'd like", "I'd like to check my"):
        await org.api.post_transcript(
            sid, transcript(partial, speaker="user", is_final=False, segment_id=segment)
        )
        await expect(grid_text).to_have_text(partial)
        await expect(grid.row(sid).locator(".latest")).to_have_attribute("data-final", "false")
        await expect(grid.row(sid).locator(".latest")).to_have_class(INTERIM)
        interim = view.page.locator(f'#transcript li.interim[data-segment-id="{segment}"]')
        await expect(interim.locator(".text")).to_have_text(partial)
        await expect(view.lines).to_have_count(1)

    final = "I'd like to check my balance."
    seq = await org.api.post_transcript(
        sid, transcript(final, speaker="user", is_final=True, segment_id=segment)
    )
    await expect(grid_text).to_have_text(final)
    await expect(grid.row(sid).locator(".latest")).to_have_attribute("data-final", "true")
    await expect(grid.row(sid).locator(".latest")).not_to_have_class(INTERIM)
    line = view.line(seq)
    await expect(line.locator(".text")).to_have_text(final)
    await expect(line).to_have_attribute("data-segment-id", segment)
    await expect(line).not_to_have_class(INTERIM)
    await expect(view.lines).to_have_count(1)
    await expect(view.page.locator("#transcript li.interim")).to_have_count(0)


async def test_finals_are_never_coalesced_in_one_burst(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """One POST of five lines (a partial and the final of s1, the same of s2, a partial of
    s3) arrives in one burst: the call view shows both finals and the s3 interim, in order
    (no final dropped or replaced by a later line), the grid's latest is s3's interim (not
    a final applied after it), and s3's final then replaces the interim in both."""
    sid = new_sid()
    await org.api.create_call(sid, status="in-progress")
    grid = await open_dashboard(org)
    await expect(grid.row(sid)).to_be_visible()
    view = await grid.new_tab(f"#/calls/{sid}")
    await expect(view.page.locator("#call-view")).to_have_attribute("data-call-sid", sid)

    said = [
        ("First, the", "user", False, "s1"),
        ("First, the account number.", "user", True, "s1"),
        ("And", "assistant", False, "s2"),
        ("And which address?", "assistant", True, "s2"),
        ("The one on", "user", False, "s3"),
    ]
    seqs = await org.api.post_transcripts(
        sid,
        [transcript(t, speaker=s, is_final=f, segment_id=seg) for t, s, f, seg in said],
    )
    finals = [said[1][0], said[3][0]]
    await expect(view.lines.locator(".text")).to_have_text([*finals, said[4][0]])
    assert await view.seqs_shown() == [seqs[1], seqs[3]]
    interim = view.lines.nth(2)
    await expect(interim).to_have_class(INTERIM)
    await expect(interim).to_have_attribute("data-segment-id", "s3")
    latest = grid.row(sid).locator(".latest")
    await expect(latest.locator(".text")).to_have_text(said[4][0])
    await expect(latest).to_have_attribute("data-final", "false")

    last = "The one on Elm Street."
    seq = await org.api.post_transcript(sid, transcript(last, speaker="user", segment_id="s3"))
    await expect(latest.locator(".text")).to_have_text(last)
    await expect(latest).to_have_attribute("data-final", "true")
    await expect(view.lines.locator(".text")).to_have_text([*finals, last])
    await expect(view.page.locator("#transcript li.interim")).to_have_count(0)
    assert await view.seqs_shown() == [seqs[1], seqs[3], seq]


async def test_an_ended_call_leaves_the_live_view_and_opens_with_its_transcript(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """A call that completes is greyed (class ``ended``) and then removed while the other
    stays; a reload's snapshot leaves it out; its call view shows the stored lines."""
    ending, staying = new_sid(), new_sid()
    for sid in (ending, staying):
        await org.api.create_call(sid, status="in-progress")
    lines = ["Thanks, that's all.", "Goodbye!"]
    for n, text in enumerate(lines):
        await org.api.post_transcript(ending, transcript(text, speaker=("user", "assistant")[n]))
    dash = await open_dashboard(org)
    await expect(dash.rows).to_have_count(2)

    await org.api.post_status(ending, "completed")
    await expect(dash.row(ending)).to_have_class(ENDED)
    await expect(dash.row(ending)).to_have_count(0)
    await expect(dash.row(staying)).to_be_visible()
    await expect(dash.page.locator("#calls")).to_have_attribute("data-count", "1")

    await dash.page.reload()
    await dash.expect_state("live")
    await expect(dash.row(staying)).to_be_visible()
    await expect(dash.row(ending)).to_have_count(0)

    await dash.show_call(ending)
    await expect(dash.page.locator("#call-status")).to_contain_text("completed")
    await expect(dash.lines.locator(".text")).to_have_text(lines)


async def test_markup_in_a_transcript_is_shown_as_text(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """Transcript text that is HTML or script is shown literally in the grid and the call
    view: no element is made from it, nothing runs and no dialog opens."""
    sid = new_sid()
    await org.api.create_call(sid, status="in-progress")
    dash = await open_dashboard(org)
    await dash.show_call(sid)
    hostile = [
        "<img src=x onerror=alert(1)>",
        '<script>window.__pwned = 1; alert("script")</script>',
        "<b onmouseover=alert(2)>bold</b> &amp; <i>it</i>",
    ]
    for n, text in enumerate(hostile):
        await org.api.post_transcript(sid, transcript(text, speaker=("user", "assistant")[n % 2]))
    await expect(dash.lines.locator(".text")).to_have_text(hostile)
    partial = "<svg onload=alert(3)>"
    await org.api.post_transcript(sid, transcript(partial, is_final=False, segment_id="p"))
    await expect(dash.page.locator("#transcript li.interim .text")).to_have_text(partial)
    await expect_no_markup_made(dash.page, "#transcript")

    await dash.go("#/calls")
    await expect(dash.row(sid).locator(".latest .text")).to_have_text(partial)
    await expect_no_markup_made(dash.page, "#calls-table")
    # Dialogs would fail the test through the console fixture; none may have opened.
    assert not dash.console.dialogs, dash.console.dialogs


async def test_another_organizations_calls_are_never_shown(
    open_dashboard: OpenDashboard, org: Org, make_org: MakeOrg
) -> None:
    """Calls of a second organization, made before the page opened (snapshot) and while
    it is open, even one with the same SID as a call of ours, never reach the page."""
    other = make_org()
    theirs_before, shared = new_sid(), new_sid()
    for sid in (theirs_before, shared):
        await other.api.create_call(sid, status="in-progress")
        await other.api.post_transcript(sid, transcript(f"secret of theirs {sid}"))
    await org.api.create_call(shared, status="in-progress")
    await org.api.post_transcript(shared, transcript("ours, on the shared SID"))

    dash = await open_dashboard(org)
    await expect(dash.row(shared).locator(".latest .text")).to_have_text("ours, on the shared SID")
    theirs_after = new_sid()
    await other.api.create_call(theirs_after, status="ringing")
    await other.api.post_transcript(shared, transcript("secret of theirs, live"))
    await other.api.post_transcript(theirs_after, transcript("secret of theirs, new call"))
    # Our own event after theirs: once it is shown, theirs would have been too.
    barrier = new_sid()
    await org.api.create_call(barrier, status="ringing")
    await org.api.post_transcript(barrier, transcript("ours, after theirs"))
    await expect(dash.row(barrier).locator(".latest .text")).to_have_text("ours, after theirs")

    await expect(dash.rows).to_have_count(2)
    await expect(dash.row(shared).locator(".latest .text")).to_have_text("ours, on the shared SID")
    html = await dash.page.content()
    assert "secret of theirs" not in html
    assert theirs_before not in html and theirs_after not in html

    await dash.show_call(shared)
    await expect(dash.lines.locator(".text")).to_have_text(["ours, on the shared SID"])
    refused: list[WebSocket] = []
    dash.page.on("websocket", lambda ws: refused.append(ws))
    await dash.go(f"#/calls/{theirs_before}")
    await expect(dash.page.locator("#call-view")).to_have_attribute("data-call-sid", theirs_before)
    for ws in [w for w in refused if theirs_before in w.url]:
        if not ws.is_closed():
            await ws.wait_for_event("close")
    assert "secret of theirs" not in await dash.page.content()
    await expect(dash.lines).to_have_count(0)


async def test_a_phone_sized_screen_has_no_horizontal_scroll(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """At 390 x 844 CSS pixels the live calls view, with long lines, fits the width."""
    for n in range(3):
        sid = new_sid()
        await org.api.create_call(sid, status="in-progress", customer_phone_number="+447700900123")
        text = "a rather long sentence that a caller might say " * 4 + "Supercalifragilistic" * 3
        await org.api.post_transcript(sid, transcript(f"{n} {text}", speaker="user"))
    dash = await open_dashboard(org, viewport={"width": 390, "height": 844})
    await expect(dash.rows).to_have_count(3)
    await expect(dash.rows.first.locator(".latest .text")).to_contain_text("rather long")
    overflow = await dash.horizontal_overflow()
    assert overflow <= 0, f"the page is {overflow} px wider than a 390 px screen"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


async def test_screenshot_of_the_live_calls_view(
    open_dashboard: OpenDashboard, make_org: MakeOrg, tmp_path: Path
) -> None:
    """The README's screenshot: a few live calls with final and interim lines at 1280 x 720.
    Written to docs/images/dashboard.png with SCRIBELINE_UPDATE_SCREENSHOT=1 (durations
    tick, so it is not rewritten every run); otherwise the committed one must exist."""
    org = make_org("acme-support")
    calls = [
        ("inbound", "queued", None, None, True),
        ("outbound", "in-progress", "assistant", "Your appointment is confirmed for", False),
        ("inbound", "in-progress", "user", "Can I change the delivery address?", True),
        ("inbound", "ringing", None, None, True),
        ("outbound", "in-progress", "user", "Yes, Tuesday afternoon works for me.", True),
        ("inbound", "in-progress", "assistant", "Let me look up your last two payments", False),
        ("inbound", "in-progress", "user", "I was charged twice for the same order.", True),
    ]
    for n, (direction, status, speaker, text, final) in enumerate(calls):
        sid = new_sid()
        await org.api.create_call(
            sid,
            status=status,
            call_type=direction,
            customer_phone_number=f"+1415555{1200 + 37 * n:04d}",
            to_phone_number=f"+1800555{100 + n % 3:04d}",
        )
        if speaker is not None and text is not None:
            await org.api.post_transcript(
                sid, transcript(text, speaker=speaker, is_final=final, segment_id=f"s{n}")
            )
    dash = await open_dashboard(org, viewport={"width": 1280, "height": 720})
    await expect(dash.rows).to_have_count(len(calls))
    await expect(dash.page.locator("#calls-table .latest.interim")).to_have_count(2)
    await expect(dash.page.locator("#org-name")).to_have_text(org.name)
    shot = tmp_path / "dashboard.png"
    await dash.page.screenshot(path=str(shot))
    assert _png_size(shot) == SCREENSHOT_SIZE
    if os.environ.get("SCRIBELINE_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(shot.read_bytes())
    assert SCREENSHOT.exists(), (
        f"{SCREENSHOT} is missing: run the browser tests with SCRIBELINE_UPDATE_SCREENSHOT=1"
    )
    assert _png_size(SCREENSHOT) == SCREENSHOT_SIZE
