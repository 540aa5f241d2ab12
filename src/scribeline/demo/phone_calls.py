"""The demo's phone calls with real audio: a recorded call played into
``/v1/media-stream`` the way Twilio streams it, and transcribed on this machine.

Each call gets a new SID and a short-lived write token restricted to that call,
carried in the URL path as a TwiML ``<Stream>`` would carry it. Calls follow one
another with a pause between them until the demo stops.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from scribeline.auth import Principal
from scribeline.demo.phone import play_call
from scribeline.demo.recording import load_call
from scribeline.demo.simulator import new_call_sid, random_phone_number
from scribeline.server import Running

__all__ = ["run_phone_calls"]

log = logging.getLogger(__name__)

#: Seconds between the end of one recorded call and the start of the next.
PAUSE = 8.0


async def run_phone_calls(
    running: Running,
    principal: Principal,
    *,
    rng: random.Random,
    announce: Callable[[str], None],
) -> None:
    """Play the recorded call again and again; ``announce`` gets each call's SID
    once its stream has started."""
    services = running.services
    recording = load_call()
    ws_base = running.base_url.replace("http://", "ws://", 1)
    while not running.stopping.is_set():
        sid = new_call_sid(rng)
        token = services.auth.mint(
            principal,
            scopes=frozenset({"write"}),
            ttl_seconds=int(recording.duration) + 300,
            now=time.time(),
            call_sid=sid,
        )
        announce(sid)
        play = asyncio.create_task(
            play_call(
                f"{ws_base}/v1/media-stream/{token}",
                recording,
                call_sid=sid,
                custom_parameters={
                    "to_phone_number": random_phone_number(rng),
                    "customer_phone_number": random_phone_number(rng),
                },
            )
        )
        stopping = asyncio.create_task(running.stopping.wait())
        await asyncio.wait([play, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not play.done():
            play.cancel()  # the server is stopping: the stream ends as a cut call
            return
        result = play.result()
        if result.server_closed:
            log.warning(
                "demo phone call %s refused: %s %s", sid, result.close_code, result.close_reason
            )
            return
        try:
            await asyncio.wait_for(running.stopping.wait(), PAUSE)
        except TimeoutError:
            continue
