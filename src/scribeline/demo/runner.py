"""``scribeline demo``: a demo organization, a fresh key and simulated live calls.

The simulated calls go through the same calls service as REST ingest, so what
a subscriber sees is exactly what a real voice platform would produce.
"""

from __future__ import annotations

import asyncio
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scribeline.auth import Principal, new_api_key
from scribeline.demo.sink import ServiceSink
from scribeline.domain import Bot, Campaign, Organization
from scribeline.errors import Conflict, NotFound
from scribeline.server import Running
from scribeline.storage import Storage

__all__ = ["DEMO_ORG", "start_demo"]

DEMO_ORG = "demo"

#: Seconds the banner waits for the first recorded phone call (the model loads first).
FIRST_AUDIO_CALL_WAIT = 30.0


async def _demo_org(storage: Storage) -> Organization:
    try:
        return await storage.create_org(DEMO_ORG)
    except Conflict:
        org = await storage.get_org(DEMO_ORG)
        assert org is not None
        return org


def _meeting_commands(client: str, urls: dict[str, str | None]) -> str:
    read_only = shlex.quote(urls["websocket_read_only_url"] or "")
    read_write = shlex.quote(urls["websocket_url"] or "")
    return (
        "    the meeting, read-only:\n"
        f"                        {client} {read_only}\n"
        "    the meeting, read-write (type "
        '{"action":"chat-message","data":{"content":"Hi"}} or {"action":"stop"}):\n'
        f"                        {client} {read_write}\n"
    )


def _finding_commands(scribeline: str, key: str, server: str, data_dir: Path | None) -> str:
    """How to find what is running now: the banner's campaign ends after a few
    minutes and the next one has another id; calls come and go."""
    remote = f"SCRIBELINE_API_KEY={key} {scribeline} {{}} --active --server {server}"
    lines = (
        "  Campaigns end and new ones start: find the running one (watch it by its id):\n"
        f"                        {remote.format('campaigns list')}\n"
        "  Calls come and go: the ones in progress (ringing calls are not, yet):\n"
        f"                        {remote.format('calls list')}\n"
    )
    if data_dir is not None:
        orgs = f"{scribeline} orgs list --data-dir {shlex.quote(str(data_dir))}"
        lines += f"  Organizations in this data directory: {orgs}\n"
    return lines


async def _dashboard_lines(
    running: Running, org_id: int, scribeline: str, data_dir: Path | None
) -> str:
    """The dashboard's one-time sign-in link, and the command that prints another."""
    from scribeline.public_url import http_base

    services = running.services
    base = http_base(services.settings.public_url) or running.base_url
    issued = await services.sessions.issue_code(org_id)
    another = f"{scribeline} dashboard --org {DEMO_ORG} --url {shlex.quote(base)}"
    if data_dir is not None:
        another += f" --data-dir {shlex.quote(str(data_dir))}"
    return (
        f"  Dashboard:          {issued.link(base)}\n"
        f"    (the link works once; another one: {another})\n"
    )


@dataclass
class _Phone:
    """The recorded phone calls: the first one's SID (None: no live audio here)."""

    first: str | None
    task: asyncio.Task[None] | None
    missing: str | None = None


async def _start_phone_calls(
    running: Running, principal: Principal, org_id: int, rng: random.Random
) -> _Phone:
    """Start playing recorded calls into the media stream (when the local engine is
    installed) and wait until the first one's call exists, for the banner."""
    from scribeline.demo.phone_calls import run_phone_calls
    from scribeline.speech.local import missing_extra

    missing = missing_extra()
    if missing is not None:
        return _Phone(None, None, missing)
    sids: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(
        run_phone_calls(running, principal, rng=rng, announce=sids.put_nowait)
    )
    first = await sids.get()
    deadline = time.monotonic() + FIRST_AUDIO_CALL_WAIT
    while time.monotonic() < deadline and not task.done():
        try:
            await running.services.calls.get(org_id, first)
            break
        except NotFound:
            await asyncio.sleep(0.05)  # the stream creates the call once the model is loaded
    return _Phone(first, task)


def _phone_commands(phone: _Phone, key: str, scribeline: str, server: str) -> str:
    if phone.first is None:
        return f"    (no phone audio: {phone.missing})\n"
    tail = f"SCRIBELINE_API_KEY={key} {scribeline} tail {phone.first} --server {server}"
    return (
        f"    a phone call's audio, transcribed here, interim text then finals:\n        {tail}\n"
    )


async def start_demo(running: Running, data_dir: Path | None = None) -> None:
    """Create the demo key, print how to watch (and how to find what runs later),
    run calls, campaigns and a meeting until stopping. ``data_dir``: the server's,
    for the banner's admin command."""
    from scribeline.demo.campaign import run_campaigns
    from scribeline.demo.meetings import run_meetings
    from scribeline.demo.simulator import new_call_sid, run_simulation

    services = running.services
    org = await _demo_org(services.storage)
    key, prefix, digest = new_api_key()
    await services.storage.add_api_key(org.id, prefix, digest, frozenset({"read"}), "demo")
    # The meeting bots belong to a key of their own that is never shown.
    _, bots_prefix, bots_digest = new_api_key()
    bots_key = await services.storage.add_api_key(
        org.id, bots_prefix, bots_digest, frozenset({"read", "write"}), "demo meeting bots"
    )
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
    principal = Principal(org.id, bots_key.scopes, bots_key.id)
    first_meeting: asyncio.Future[dict[str, str | None]] = asyncio.Future()

    def announce(bot: Bot, urls: dict[str, str | None]) -> None:
        if not first_meeting.done():
            first_meeting.set_result(urls)
        else:
            print(
                f"\nA new simulated meeting started:\n{_meeting_commands(client, urls)}", flush=True
            )

    meeting = asyncio.create_task(
        run_meetings(
            services, principal, ws_base, stop=running.stopping, announce=announce, rng=rng
        )
    )
    bot_urls = await first_meeting
    phone = await _start_phone_calls(running, principal, org.id, rng)
    pinned_created = sink.created(pinned)
    calls = asyncio.create_task(
        run_simulation(
            sink, concurrent_calls=3, pinned_call_sid=pinned, rng=rng, stop=running.stopping
        )
    )
    # So the printed command finds the call (or go on if the simulation has failed).
    await asyncio.wait([pinned_created, calls], return_when=asyncio.FIRST_COMPLETED)
    scribeline = shlex.quote(str(Path(sys.executable).with_name("scribeline")))
    tail = f"SCRIBELINE_API_KEY={key} {scribeline} tail {pinned} --server {running.base_url}"
    watch_call = shlex.quote(f"{ws_base}/live-transcript/{pinned}?token={key}")
    watch_campaign = shlex.quote(f"{ws_base}/ws/campaigns/{first.id}/progress?token={key}")
    watch_events = shlex.quote(f"{ws_base}/v1/events?token={key}")
    print(
        "\nDemo organization 'demo' with simulated live calls, a campaign and a meeting.\n"
        f"{await _dashboard_lines(running, org.id, scribeline, data_dir)}"
        f"  Read-only demo key: {key}\n"
        f"  Health:             {running.base_url}/readyz\n"
        "  Paste into another terminal to watch:\n"
        f"    a live call:        {client} {watch_call}\n"
        f"    the same, readable: {tail}\n"
        f"{_phone_commands(phone, key, scribeline, running.base_url)}"
        f"    the campaign:       {client} {watch_campaign}\n"
        f"    everything (then type "
        '{"action":"subscribe","topic":"transcription","filter":"*"}):\n'
        f"                        {client} {watch_events}\n"
        f"{_meeting_commands(client, bot_urls)}"
        f"{_finding_commands(scribeline, key, running.base_url, data_dir)}",
        flush=True,
    )
    await calls
    await campaigns
    await meeting
    if phone.task is not None:
        await phone.task
