"""Campaign progress and meeting bots on the dashboard, fed through REST and a bot's producer."""

from __future__ import annotations

import re

import pytest

from tests.integration.bot_helpers import create_bot, open_url, participant, produce, ts
from tests.integration.test_campaigns import (
    add_contacts,
    create_campaign,
    phone,
    running_campaign,
    set_outcome,
    start,
)

from .pages import Dashboard, OpenDashboard, Org, expect, expect_no_markup_made, markup

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The ratio a <progress> shows, whether its max is the contacts or 100 (percent).
_PROGRESS_IS = """([selector, ratio]) => {
  const bar = document.querySelector(selector);
  return bar !== null && bar.max > 0 && Math.abs(bar.value / bar.max - ratio) < 0.001;
}"""


async def _progress_reaches(dash: Dashboard, campaign_id: int, ratio: float) -> None:
    selector = f'#campaigns [data-campaign-id="{campaign_id}"] progress'
    await dash.page.wait_for_function(_PROGRESS_IS, arg=[selector, ratio])


async def test_campaign_progress_and_outcomes_update_live(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """A running campaign's bar, counts and per-contact outcomes follow the outcomes
    reported over REST while the page is open."""
    campaign, contacts = await running_campaign(org.api, 4)
    dash = await open_dashboard(org)
    await dash.go("#/campaigns")
    card = dash.page.locator(f'#campaigns [data-campaign-id="{campaign["id"]}"]')
    await expect(card).to_be_visible()
    await expect(card.locator(".contacts tr[data-contact-id]")).to_have_count(4)
    await _progress_reaches(dash, campaign["id"], 0.0)
    counts = await card.locator(".counts").inner_text()

    first, second = contacts[0]["id"], contacts[1]["id"]
    await set_outcome(org.api, campaign["id"], first, "success", duration=42.0)
    await _progress_reaches(dash, campaign["id"], 0.25)
    await expect(card.locator(".counts")).not_to_have_text(counts)
    outcome = card.locator(f'.contacts tr[data-contact-id="{first}"] .outcome')
    await expect(outcome).to_have_text(re.compile("success|completed", re.I))

    await set_outcome(org.api, campaign["id"], second, "failed", error="no answer")
    await _progress_reaches(dash, campaign["id"], 0.5)
    outcome = card.locator(f'.contacts tr[data-contact-id="{second}"] .outcome')
    await expect(outcome).to_have_text(re.compile("failed", re.I))


async def test_a_meeting_shows_its_participants_and_live_transcript(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """A bot's participants and transcript, sent by its producer before and while the page
    is open, show in the meetings list and the meeting view; its end shows as its status."""
    bot = await create_bot(org.api, name="Notetaker")
    producer = await open_url(bot["producer_url"])
    try:
        await produce(producer, "start")
        await produce(producer, "participant-tracked", participant("p1", "John Doe"))
        await produce(producer, "ts", ts("Hello everyone.", 0.5, 1.4, 0, "John Doe"))

        dash = await open_dashboard(org)
        await dash.go("#/meetings")
        card = dash.page.locator(f'#meetings [data-bot-id="{bot["id"]}"]')
        await expect(card).to_be_visible()
        await expect(card.locator(".bot-status")).not_to_have_text("")
        await expect(card.locator(".participants li")).to_have_text(["John Doe"])
        await produce(producer, "participant-tracked", participant("p2", "Ana Lopez"))
        await expect(card.locator(".participants li")).to_have_count(2)

        await dash.go(f"#/meetings/{bot['id']}")
        said = dash.page.locator("#meeting-transcript li")
        await expect(said).to_have_count(1)
        await expect(said.first).to_contain_text("John Doe")
        await expect(said.first).to_contain_text("Hello everyone.")
        await produce(producer, "ts", ts("Hi John, thanks for joining.", 1.6, 2.9, 1, "Ana Lopez"))
        await expect(said).to_have_count(2)
        await expect(said.last).to_contain_text("Ana Lopez")
        await expect(said.last).to_contain_text("Hi John, thanks for joining.")

        await produce(producer, "stop", {"reason": "meeting_ended"})
        await dash.go("#/meetings")
        await expect(card.locator(".bot-status")).to_contain_text(re.compile("finished", re.I))
    finally:
        await producer.close()


async def test_markup_in_meeting_and_campaign_fields_is_shown_as_text(
    open_dashboard: OpenDashboard, org: Org
) -> None:
    """A bot's name, a participant's name, a spoken line and its speaker, a chat message
    and its sender, a campaign's name and a contact's name that are HTML are shown
    literally in the meetings list, the meeting view and the campaigns view: no element
    is made from them, no script runs, no dialog opens."""
    said = {name: markup(name) for name in ("bot", "person", "line", "speaker", "chat", "from")}
    campaign = await create_campaign(org.api, name=markup("campaign"))
    await add_contacts(
        org.api, campaign["id"], [{"phone_number": phone(0), "name": markup("contact")}]
    )
    await start(org.api, campaign["id"])
    bot = await create_bot(org.api, name=said["bot"])
    producer = await open_url(bot["producer_url"])
    try:
        await produce(producer, "start")
        await produce(producer, "participant-tracked", participant("p1", said["person"]))
        await produce(producer, "ts", ts(said["line"], 0.5, 1.4, 0, said["speaker"]))
        chat = {"username": said["from"], "content": said["chat"], "user_avatar": None}
        await produce(producer, "chat-message", chat)
    finally:
        await producer.close()

    dash = await open_dashboard(org)
    page = dash.page
    await dash.go("#/meetings")
    card = page.locator(f'#meetings [data-bot-id="{bot["id"]}"]')
    await expect(card).to_contain_text(said["bot"])
    await expect(card.locator(".participants li")).to_have_text([said["person"]])
    await expect_no_markup_made(page, "main")

    await dash.go(f"#/meetings/{bot['id']}")
    line = page.locator("#meeting-transcript li")
    await expect(line).to_have_count(1)
    await expect(line).to_contain_text(said["line"])
    await expect(line).to_contain_text(said["speaker"])
    for text in (said["bot"], said["person"], said["chat"], said["from"]):
        await expect(page.locator("main")).to_contain_text(text)
    await expect_no_markup_made(page, "main")

    await dash.go("#/campaigns")
    campaign_card = page.locator(f'#campaigns [data-campaign-id="{campaign["id"]}"]')
    await expect(campaign_card).to_contain_text(markup("campaign"))
    contact = campaign_card.locator(".contacts tr[data-contact-id]")
    await expect(contact).to_contain_text(markup("contact"))
    await expect_no_markup_made(page, "main")
    # A dialog would fail the test through the console fixture; none may have opened.
    assert not dash.console.dialogs, dash.console.dialogs
