"""The CampaignStore contract for a campaign list: every campaign's counters at once."""

from __future__ import annotations

from scribeline.storage import Storage


async def test_counters_of_campaigns_match_each_campaigns_own(storage: Storage) -> None:
    """Many campaigns' counters in one call equal each one's own counters; a campaign
    without contacts has zero counters, and no id asked for is left out."""
    org = await storage.create_org("acme")
    assistant = await storage.get_assistant(org.id, None)
    assert assistant is not None
    ids = []
    for contacts in (3, 0, 2):
        campaign = await storage.create_campaign(org.id, assistant.id, f"c{contacts}")
        added = await storage.add_contacts(
            campaign.id, [(f"+1555{n:04d}", None) for n in range(contacts)]
        )
        if added:
            await storage.start_campaign(campaign.id)
            await storage.record_outcome(campaign.id, added[0].id, "success", 12.5, None, None)
        ids.append(campaign.id)
    together = await storage.counters_of_campaigns(ids)
    assert sorted(together) == sorted(ids)
    for campaign_id in ids:
        assert together[campaign_id] == await storage.counters(campaign_id)
    assert (together[ids[0]].total, together[ids[0]].successful) == (3, 1)
    assert together[ids[0]].total_duration == 12.5
    assert together[ids[1]].total == 0
    assert await storage.counters_of_campaigns([]) == {}
