"""The captions link: a page that shows one call's lines, with a token good for that call only."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.helpers import ServerProcess, new_sid, transcript

from .pages import OpenDashboard, Org, expect, expect_no_markup_made, markup

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_captions_link_opens_only_its_call(
    open_dashboard: OpenDashboard, org: Org, server: ServerProcess
) -> None:
    """The URL from #captions-link, opened in a browser with no session, shows that call's
    lines live (a partial marked interim) and drops the token from the address bar; the
    same token on another call of the organization is refused on the page and by the API."""
    sid, other = new_sid(), new_sid()
    for call in (sid, other):
        await org.api.create_call(call, status="in-progress")
    await org.api.post_transcript(sid, transcript("Good morning.", speaker="assistant"))
    await org.api.post_transcript(other, transcript("Words of the other call."))

    dash = await open_dashboard(org)
    await dash.show_call(sid)
    await dash.page.locator("#captions-link").click()
    shown = dash.page.locator("#captions-url")
    await expect(shown).to_contain_text("/dashboard/captions.html#call=")
    url = await shown.evaluate("(e) => ('value' in e && e.value) || e.textContent")
    fragment = parse_qs(urlsplit(url.strip()).fragment)
    assert fragment["call"] == [sid], url
    token = fragment["token"][0]

    viewer = await open_dashboard(org, sign_in=False)
    await viewer.page.goto(url.strip())
    captions = viewer.page.locator("#captions .line")
    await expect(captions.last).to_contain_text("Good morning.")
    assert token not in viewer.page.url, "the token stayed in the address bar"
    assert await viewer.page.context.cookies() == []
    await org.api.post_transcript(sid, transcript("How can I help?", speaker="assistant"))
    await expect(captions.last).to_contain_text("How can I help?")
    await org.api.post_transcript(
        sid, transcript("I need to", speaker="user", is_final=False, segment_id="u1")
    )
    await expect(viewer.page.locator("#captions .line.interim")).to_contain_text("I need to")
    await org.api.post_transcript(other, transcript("More of the other call."))
    await org.api.post_transcript(
        sid, transcript("I need to move my booking.", speaker="user", segment_id="u1")
    )
    await expect(captions.last).to_contain_text("I need to move my booking.")
    await expect(viewer.page.locator("#captions .line.interim")).to_have_count(0)
    await expect(viewer.page.locator("#captions")).not_to_contain_text("other call")

    elsewhere = await open_dashboard(org, sign_in=False)
    refused = f"{server.base_url}/dashboard/captions.html#call={other}&token={token}"
    await elsewhere.page.goto(refused)
    await expect(elsewhere.page.locator("#captions-error")).to_be_visible()
    await expect(elsewhere.page.locator("#captions-error")).not_to_have_text("")
    await expect(elsewhere.page.locator("#captions .line")).to_have_count(0)

    api = org.api
    assert (await api.request("GET", f"/v1/calls/{sid}", key=token)).status == 200
    assert (await api.request("GET", f"/v1/calls/{other}", key=token)).status in (403, 404)
    assert (await api.request("GET", "/v1/calls", key=token)).status == 403
    write = await api.request(
        "POST", f"/v1/calls/{sid}/transcripts", json_body=transcript("forged"), key=token
    )
    assert write.status == 403, f"the captions token wrote: {write.status} {write.text}"


async def test_markup_in_captions_is_shown_as_text(open_dashboard: OpenDashboard, org: Org) -> None:
    """Caption lines that are HTML, final or partial, are shown literally on the captions
    page: no element is made from them, no script runs, no dialog opens."""
    sid = new_sid()
    await org.api.create_call(sid, status="in-progress")
    final, partial = markup("final"), markup("partial")
    await org.api.post_transcript(sid, transcript(final, speaker="user"))
    dash = await open_dashboard(org)
    await dash.show_call(sid)
    await dash.page.locator("#captions-link").click()
    url = await dash.page.locator("#captions-url").evaluate(
        "(e) => ('value' in e && e.value) || e.textContent"
    )

    viewer = await open_dashboard(org, sign_in=False)
    await viewer.page.goto(url.strip())
    # Each line has the speaker before the text (the contract fixes the line, not its parts).
    await expect(viewer.page.locator("#captions .line")).to_contain_text([final])
    await org.api.post_transcript(
        sid, transcript(partial, speaker="assistant", is_final=False, segment_id="p")
    )
    await expect(viewer.page.locator("#captions .line.interim")).to_contain_text([partial])
    await expect_no_markup_made(viewer.page, "#captions")
    assert not viewer.console.dialogs, viewer.console.dialogs
