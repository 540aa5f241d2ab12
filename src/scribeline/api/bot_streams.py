"""A meeting bot's WebSockets (PROTOCOL.md section 4).

``/v1/bots/{id}/ws``: subscribers, opened only with one of the bot's
capability tokens; live events, a ``ping`` event every interval, and
actions from the read-write URL passed to the bot.

``/v1/bots/{id}/producer``: the bot itself. It sends its events (stored and
acknowledged in order) and receives actions, plus the ``stop`` event if the
bot is ended from the server's side.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from scribeline.api.state import SERVICES, Services
from scribeline.api.websocket import (
    Endpoint,
    authenticate,
    detach_stream,
    join_stream,
    report,
    serve_websocket,
)
from scribeline.auth import Credentials
from scribeline.connection import Connection, Inbound
from scribeline.domain import Bot, BotStatus
from scribeline.errors import (
    BotEnded,
    Conflict,
    InvalidMessage,
    Replaced,
    error_message,
)
from scribeline.events import BotEventType, NewEvent, Position
from scribeline.hub import CaughtUp
from scribeline.ingest.bot_models import EVENT_MODELS, event_data
from scribeline.ingest.models import parse_ref
from scribeline.protocols import meeting_bot as proto
from scribeline.protocols.common import decode_object, describe_problem
from scribeline.protocols.frames import text_frame

__all__ = ["bot_producer", "bot_subscriber"]

FORMAT = "meeting-bot"
PRODUCER_FORMAT = "meeting-bot-producer"
SUBSCRIBER_ROLES = frozenset({"read-write", "read-only"})
PRODUCER_ROLES = frozenset({"producer"})
_PING_FRAME = text_frame(proto.PING)


async def bot_subscriber(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    s = services.settings

    bot_id = request.match_info["bot_id"]

    async def join(conn: Connection, credentials: Credentials) -> tuple[Bot, str] | None:
        joined = await _join(services, conn, bot_id, credentials)
        if joined is not None:
            conn.every(s.bot_ping_interval, _PING_FRAME)
        return joined

    async def answer(conn: Connection, joined: tuple[Bot, str], message: Inbound) -> None:
        bot, role = joined
        action = proto.decode_action(message.data) if message.is_text else None
        if action is not None and role == "read-write":
            await services.bots.act(bot, action)

    async def leave(conn: Connection, joined: tuple[Bot, str]) -> None:
        await detach_stream(services, conn, joined[0].stream)

    # No error messages: in this format a message of type ``error`` means the
    # bot failed, so an error closes with its code and name only.
    return await serve_websocket(
        request,
        Endpoint(join, None, None, leave, answer=answer),
        s.bot_actions_per_second,
        max_frame_bytes=s.bot_max_action_bytes,
    )


async def _join(
    services: Services, conn: Connection, public_id: str, credentials: Credentials
) -> tuple[Bot, str] | None:
    """The bot and the subscriber's role, now following its stream; None if it has ended."""
    principal = await authenticate(services, conn, credentials.token)
    role = principal.allow_bot(public_id, SUBSCRIBER_ROLES)
    bot = await services.bots.get(principal.org_id, public_id)
    if bot.ended:
        return None

    async def catch_up(head: Position) -> CaughtUp | None:
        # Live only: start after the head, read once the topic holds live events.
        nonlocal bot
        bot = await services.bots.get(principal.org_id, public_id)
        return None if bot.ended else CaughtUp(head.seq)

    join = partial(services.hub.join, bot.stream, conn, FORMAT, proto.encode_event, catch_up)
    limit = services.settings.max_connections_per_bot
    if not await join_stream(services, conn, bot.stream, "bot", join, limit):
        return None
    return bot, role


# -- the producer --------------------------------------------------------------


def _validate(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(event type, validated data) of a producer message (its ``ref`` removed)."""
    kind = message.pop("type", None)
    if kind not in EVENT_MODELS:
        raise InvalidMessage(f"type must be one of {', '.join(EVENT_MODELS)}")
    data = message.pop("data", None)
    if message:
        raise InvalidMessage(f"Unknown field {next(iter(message))!r}")
    try:
        return kind, event_data(kind, data)
    except ValidationError as exc:
        raise InvalidMessage(describe_problem(exc.errors(), at=("data",))) from None


def _out_of_order(kind: str, started: bool) -> Conflict | None:
    """``start`` comes first and once; a bot may end (stop, error) before it starts."""
    if kind == BotEventType.START:
        return Conflict("The bot has already started") if started else None
    if not started and kind not in (BotEventType.STOP, BotEventType.ERROR):
        return Conflict("Send start first")
    return None


async def bot_producer(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    bot_id = request.match_info["bot_id"]  # not the request: the connection outlives it

    async def join(conn: Connection, credentials: Credentials) -> Bot:
        return await _authorize_producer(services, conn, bot_id, credentials)

    async def serve(conn: Connection, bot: Bot) -> None:
        async def replaced() -> None:  # run on this node when a later producer connects
            await report(conn, Replaced("Another producer connected for this bot"), error_message)

        await services.bots.attach_producer(bot, conn, replaced)
        await _serve_producer(services, conn, bot)

    async def leave(conn: Connection, bot: Bot) -> None:
        await services.bots.detach_producer(bot, conn)

    return await serve_websocket(
        request,
        Endpoint(join, serve, error_message, leave, ending=(BotEnded,), acknowledges=True),
        services.settings.producer_messages_per_second,
        pace=True,
    )


async def _authorize_producer(
    services: Services, conn: Connection, public_id: str, credentials: Credentials
) -> Bot:
    principal = await authenticate(services, conn, credentials.token)
    if principal.bot_id is not None:
        principal.allow_bot(public_id, PRODUCER_ROLES)
    else:
        principal.require("write")
        principal.allow_organization()
    bot = await services.bots.get(principal.org_id, public_id)
    if bot.ended:
        raise BotEnded(f"Bot {public_id} has ended")
    return bot


async def _serve_producer(services: Services, conn: Connection, bot: Bot) -> None:
    hub = services.hub

    async def catch_up(head: Position) -> CaughtUp:
        nonlocal bot
        bot = await services.bots.get(bot.org_id, bot.public_id)
        if bot.ended:
            raise BotEnded(f"Bot {bot.public_id} has ended")
        return CaughtUp(head.seq)

    # Told of actions, and of a stop stored by the server (REST, an action).
    await hub.attach_relay(bot.actions_channel, conn)
    try:
        await hub.join(bot.stream, conn, PRODUCER_FORMAT, proto.encode_terminal, catch_up)
        following = True
        try:
            started = bot.status == BotStatus.RECORDING
            while (message := await conn.next_message()) is not None:
                ref = None
                try:
                    body = decode_object(message.text())
                    ref = parse_ref(body.pop("ref", None))
                    kind, data = _validate(body)
                except InvalidMessage as exc:
                    conn.send(error_message(exc, ref))
                    continue
                refusal = _out_of_order(kind, started)
                if refusal is not None:
                    conn.send(error_message(refusal, ref))
                    continue
                ends = kind in (BotEventType.STOP, BotEventType.ERROR)
                if ends:
                    # Its own end is acknowledged, not echoed back to it.
                    await hub.detach(bot.stream, conn)
                    following = False
                stored = await services.bots.append(bot, NewEvent(kind, data, closes=ends))
                ack: dict[str, Any] = {"type": "ack", "seq": stored.seq}
                if ref is not None:
                    ack["ref"] = ref
                conn.send(orjson.dumps(ack))
                started = True
                if ends:
                    return
        finally:
            if following:
                with contextlib.suppress(Exception):
                    await hub.detach(bot.stream, conn)
    finally:
        await hub.detach_relay(bot.actions_channel, conn)
