"""The demo's meeting: a realtime bot created through the bot service and
played by the simulated bot over the running server's producer WebSocket,
exactly as an external bot process would. The meeting repeats its script
until someone stops it from the read-write URL; then a new bot joins."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed

from scribeline.api.bots import capability_urls
from scribeline.api.state import Services
from scribeline.auth import Principal
from scribeline.demo.bot import run_bot
from scribeline.domain import REALTIME_MODEL, Bot
from scribeline.errors import BotEnded

__all__ = ["BOT_NAME", "run_meetings"]

log = logging.getLogger(__name__)

BOT_NAME = "Scribeline Notetaker"
MEETING_URL = "https://meet.example.com/weekly-product-sync"
#: Seconds between one meeting's end and the next bot joining.
PAUSE = 3.0

#: Told of each new bot and its URLs (the demo prints them).
Announce = Callable[[Bot, dict[str, str | None]], None]


async def run_meetings(
    services: Services,
    principal: Principal,
    ws_base: str,
    *,
    stop: asyncio.Event,
    announce: Announce,
    rng: random.Random,
) -> None:
    """Run one meeting after another until ``stop`` is set."""
    while not stop.is_set():
        bot = await services.bots.create(
            principal.org_id, principal.key_id, MEETING_URL, BOT_NAME, REALTIME_MODEL
        )
        urls = capability_urls(services, principal, bot, ws_base)
        producer_url = urls["producer_url"]
        assert producer_url is not None
        announce(bot, urls)
        try:
            reason = await run_bot(producer_url, bot_name=BOT_NAME, loop=True, rng=rng, stop=stop)
            log.info("demo meeting %s ended: %s", bot.public_id, reason)
        except (OSError, ConnectionClosed) as exc:
            log.warning("demo meeting %s lost its connection: %s", bot.public_id, exc)
            with contextlib.suppress(BotEnded):
                await services.bots.stop(bot)  # no producer left: ends at once
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PAUSE)
