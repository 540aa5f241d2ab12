"""A simulated outbound campaign for the demo: a dozen contacts, a mix of outcomes.

A call is placed to the next contact every few seconds. Each rings first;
answered calls play an outbound dialogue and complete (success), some ring out
(``ringing`` until ``no-answer``, so failed), and some contacts are skipped
without a call. When every contact has an outcome the campaign completes and,
after a pause, a new one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from scribeline.demo.dialogues import DIALOGUES
from scribeline.demo.simulator import (
    SleepFn,
    new_call_sid,
    play_call,
    random_phone_number,
    ring_out,
)
from scribeline.demo.sink import ServiceSink
from scribeline.domain import Campaign
from scribeline.ingest.campaigns import CampaignService

__all__ = ["run_campaigns"]

log = logging.getLogger(__name__)

NAMES = (
    "Maria Lopez",
    "James Carter",
    "Aisha Khan",
    "Tom Becker",
    "Yuki Tanaka",
    "Priya Nair",
    "Daniel Okafor",
    "Sofia Rossi",
    "Liam Walsh",
    "Chen Wei",
    "Olivia Brown",
    "Noah Schmidt",
)


async def _contact_call(
    sink: ServiceSink,
    campaigns: CampaignService,
    campaign: Campaign,
    contact_id: int,
    phone: str,
    rng: random.Random,
    speed: float,
    sleep: SleepFn,
) -> None:
    roll = rng.random()
    if roll < 0.15:
        await campaigns.record_outcome(campaign, contact_id, "skipped", None, None, "Opted out")
        return
    sid = new_call_sid(rng)
    sink.contacts[sid] = contact_id
    if roll < 0.35:  # rings, unanswered, until no-answer
        await ring_out(sink, sid, rng=rng, speed=speed, sleep=sleep, customer_phone_number=phone)
        return
    outbound = [d for d in DIALOGUES if d.call_type == "outbound"] or list(DIALOGUES)
    await play_call(
        sink,
        sid,
        rng.choice(outbound),
        rng=rng,
        speed=speed,
        sleep=sleep,
        customer_phone_number=phone,
        call_type="outbound",
    )


async def run_campaign(
    sink: ServiceSink,
    campaigns: CampaignService,
    org_id: int,
    *,
    rng: random.Random,
    contacts: int = 12,
    speed: float = 2.0,
    sleep: SleepFn = asyncio.sleep,
    announce: asyncio.Queue[Campaign] | None = None,
) -> Campaign:
    """Run one campaign to completion; returns it."""
    campaign = await campaigns.create(org_id, f"Renewal reminders {rng.randint(100, 999)}", None)
    people = rng.sample(NAMES, k=min(contacts, len(NAMES)))
    added = await campaigns.add_contacts(
        campaign, [(random_phone_number(rng), name) for name in people]
    )
    campaign = await campaigns.start(campaign)
    if announce is not None:
        announce.put_nowait(campaign)
    tasks = []
    for contact in added:
        tasks.append(
            asyncio.create_task(
                _contact_call(
                    sink, campaigns, campaign, contact.id, contact.phone_number, rng, speed, sleep
                )
            )
        )
        await sleep(rng.uniform(3, 6))
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.warning("a demo campaign call failed: %s", outcome)
    return campaign


async def run_campaigns(
    sink: ServiceSink,
    campaigns: CampaignService,
    org_id: int,
    *,
    rng: random.Random,
    stop: asyncio.Event,
    announce: asyncio.Queue[Campaign] | None = None,
) -> None:
    """Campaign after campaign until ``stop`` is set."""
    while not stop.is_set():
        runner = asyncio.create_task(
            run_campaign(sink, campaigns, org_id, rng=rng, announce=announce)
        )
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            return
        stopper.cancel()
        if runner.exception() is not None:
            log.warning("demo campaign failed: %s", runner.exception())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=20)  # a pause between campaigns
