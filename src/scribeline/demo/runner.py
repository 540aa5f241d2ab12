"""``scribeline demo``: a demo organization, a fresh key and simulated live calls.

The simulated calls go through the same calls service as REST ingest, so what
a subscriber sees is exactly what a real voice platform would produce.
"""

from __future__ import annotations

import asyncio
import random
import shlex
import sys

from scribeline.auth import new_api_key
from scribeline.demo.sink import ServiceSink
from scribeline.domain import Campaign, Organization
from scribeline.errors import Conflict
from scribeline.server import Running
from scribeline.storage import Storage

__all__ = ["DEMO_ORG", "start_demo"]

DEMO_ORG = "demo"


async def _demo_org(storage: Storage) -> Organization:
    try:
        return await storage.create_org(DEMO_ORG)
    except Conflict:
        org = await storage.get_org(DEMO_ORG)
        assert org is not None
        return org


async def start_demo(running: Running) -> None:
    """Create the demo key, print how to watch, run calls and campaigns until stopping."""
    from scribeline.demo.campaign import run_campaigns
    from scribeline.demo.simulator import new_call_sid, run_simulation

    services = running.services
    org = await _demo_org(services.storage)
    key, prefix, digest = new_api_key()
    await services.storage.add_api_key(org.id, prefix, digest, frozenset({"read"}), "demo")
    rng = random.Random()
    pinned = new_call_sid(rng)
    sink = ServiceSink(services.calls, org.id)
    started: asyncio.Queue[Campaign] = asyncio.Queue()
    campaigns = asyncio.create_task(
        run_campaigns(
            sink, services.campaigns, org.id, rng=rng, stop=running.stopping, announce=started
        )
    )
    first = await started.get()
    ws_base = running.base_url.replace("http://", "ws://", 1)
    client = f"{shlex.quote(sys.executable)} -m websockets"
    watch_call = shlex.quote(f"{ws_base}/live-transcript/{pinned}?token={key}")
    watch_campaign = shlex.quote(f"{ws_base}/ws/campaigns/{first.id}/progress?token={key}")
    watch_events = shlex.quote(f"{ws_base}/v1/events?token={key}")
    print(
        "\nDemo organization 'demo' with simulated live calls and a campaign.\n"
        f"  Read-only demo key: {key}\n"
        f"  Health:             {running.base_url}/readyz\n"
        "  Paste into another terminal to watch:\n"
        f"    a live call:        {client} {watch_call}\n"
        f"    the campaign:       {client} {watch_campaign}\n"
        f"    everything (then type "
        '{"action":"subscribe","topic":"transcription","filter":"*"}):\n'
        f"                        {client} {watch_events}\n",
        flush=True,
    )
    await run_simulation(
        sink, concurrent_calls=3, pinned_call_sid=pinned, rng=rng, stop=running.stopping
    )
    await campaigns
