"""The bot service: meeting bots' lifecycle, their events and their actions.

A bot's events are stored on its stream like any other (seq, durability,
the organization event stream) and published. Actions from subscribers are
not stored: they are published on the bot's actions channel, which the
node holding the bot's producer connection follows.

Stopping (a ``stop`` action or REST): the producer, if this process holds
it, is sent the stop directly (no broker involved) and given
``stop_timeout`` seconds to store its own ``stop``; otherwise, or if it does
not, the server stores ``stop`` itself. The stream closes on the first
``stop`` stored, so there is exactly one. With no producer here the stop is
also published on the bot's actions channel, best effort: a broker outage
does not keep the server from storing the stop.

One producer per bot across the cluster: a producer holds the bot's claim
(``bot-producer:N``), and a producer connecting on any node displaces the
one before it, which is told ``replaced`` on its own node. A stop arriving
on a node that does not hold the producer is handed to the node that does
(a cluster request, answered once that node's stop is done); if that node
does not answer within the stop timeout and a little more, this node
stores the ``stop`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from scribeline.broker import Broker, BrokerUnavailable
from scribeline.cluster import Signals
from scribeline.connection import Connection
from scribeline.domain import Bot
from scribeline.errors import BotEnded, NotFound, StreamClosed
from scribeline.events import BotEventType, NewEvent, StoredEvent
from scribeline.ingest.publish import Publisher
from scribeline.protocols.meeting_bot import (
    STOP_ACTION,
    ChatAction,
    StopAction,
    encode_action,
    encode_org_event,
)
from scribeline.redaction import redact
from scribeline.storage import Storage

__all__ = ["MANUALLY_STOPPED", "BotService", "EventsPage"]

log = logging.getLogger(__name__)

#: The stop reason of a bot stopped through REST or an action.
MANUALLY_STOPPED = "manually_stopped"

#: The cluster request that asks the node holding a bot's producer to stop it.
STOP_REQUEST = "bot.stop"
#: Seconds beyond the stop timeout that a node waits for another node's stop.
STOP_GRACE = 2.0

#: The text field of each bot event whose text is redacted.
_TEXT_FIELDS: dict[str, str] = {
    BotEventType.TS.value: "transcript",
    BotEventType.CHAT_MESSAGE.value: "content",
}


@dataclass(frozen=True, slots=True)
class EventsPage:
    """One page of a bot's stored events, as encoded frames (the bytes go out as
    they are); ``next_after`` continues it (None: nothing follows)."""

    frames: list[bytes]
    next_after: int | None


def _producer_key(bot: Bot) -> str:
    return f"bot-producer:{bot.id}"


class BotService:
    """Meeting bots for the REST API, the bot WebSockets and the demo."""

    def __init__(
        self,
        storage: Storage,
        broker: Broker,
        publisher: Publisher,
        stop_timeout: float,
        signals: Signals,
        redaction: Callable[[int], Awaitable[frozenset[str]]] | None = None,
    ) -> None:
        self._storage = storage
        # org id -> the PII kinds its bots' transcripts and chat are stored without.
        self._redaction = redaction
        self._broker = broker
        self._publisher = publisher
        self._stop_timeout = stop_timeout
        self._signals = signals
        self._producers: dict[int, Connection] = {}
        self._ended: dict[int, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        signals.answer(STOP_REQUEST, self._answer_stop)

    async def create(
        self, org_id: int, key_id: int, meeting_url: str, bot_name: str, model: str
    ) -> Bot:
        return await self._storage.create_bot(org_id, key_id, meeting_url, bot_name, model)

    async def get(self, org_id: int | None, public_id: str) -> Bot:
        # An id that no bot can have (too long, NUL, which PostgreSQL refuses) is not looked up.
        known = len(public_id) <= 64 and "\x00" not in public_id
        bot = await self._storage.get_bot(org_id, public_id) if known else None
        if bot is None:
            raise NotFound(f"Bot {public_id} not found")
        return bot

    async def list_bots(self, org_id: int, status: str | None, limit: int) -> list[Bot]:
        """The organization's bots, newest first (``status``: only those)."""
        return await self._storage.list_bots(org_id, status, limit)

    async def events(self, bot: Bot, after: int, limit: int, max_bytes: int) -> EventsPage:
        """A page of the bot's stored events after seq ``after``, in seq order, each
        encoded once as the organization event stream's ``meeting`` topic has it:
        at most ``limit`` of them and ``max_bytes`` of frames, but at least one."""
        events = await self._storage.read(bot.stream, after, limit + 1)
        more = len(events) > limit
        frames: list[bytes] = []
        size = 0
        for event in events[:limit]:
            frame = encode_org_event(bot.public_id, event)
            if frames and size + len(frame) > max_bytes:
                more = True
                break
            frames.append(frame)
            size += len(frame)
        return EventsPage(frames, events[len(frames) - 1].seq if more and frames else None)

    async def append(self, bot: Bot, event: NewEvent) -> StoredEvent:
        """Store one of the bot's events and publish it; ``BotEnded`` once it has
        ended. A transcript's or chat message's text is redacted first."""
        field = _TEXT_FIELDS.get(event.type)
        if field is not None and self._redaction is not None:
            kinds = await self._redaction(bot.org_id)
            if kinds and isinstance(event.data.get(field), str):
                data = {**event.data, field: redact(event.data[field], kinds).text}
                event = NewEvent(event.type, data, closes=event.closes, ts=event.ts)
        try:
            (stored,) = await self._storage.append(bot.stream, [event])
        except StreamClosed:
            raise BotEnded(f"Bot {bot.public_id} has ended") from None
        await self._publisher.publish(bot.org_id, [stored], {"bot_id": bot.public_id})
        if stored.closes:
            self._settle(bot)
        return stored

    def _settle(self, bot: Bot) -> None:
        """The bot has ended: wake whoever waits for its producer's stop."""
        waiter = self._ended.pop(bot.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def act(self, bot: Bot, action: ChatAction | StopAction) -> None:
        """Pass a subscriber's action to the bot's producer, wherever it is connected
        (``BrokerUnavailable`` if a chat message cannot be passed on now)."""
        if isinstance(action, StopAction):
            self._spawn(self.stop(bot))
        else:
            await self._broker.publish(bot.actions_channel, encode_action(action))

    async def stop(self, bot: Bot) -> None:
        """End the bot: by its producer (on whichever node holds it) if willing, else
        ourselves."""
        if bot.id not in self._producers:
            cluster = self._signals.cluster
            owner = await cluster.owner(_producer_key(bot))
            if owner is not None and owner != cluster.node_id:
                request = {"org_id": bot.org_id, "bot_id": bot.public_id}
                within = self._stop_timeout + STOP_GRACE
                reply = await self._signals.request(owner, STOP_REQUEST, request, within)
                if reply is not None and "error" not in reply:
                    return
                log.info("bot %s: its producer's node did not stop it; stopping it", bot.public_id)
        await self._stop_here(bot)

    async def _answer_stop(self, request: dict[str, Any]) -> dict[str, Any]:
        """Another node asks us to stop a bot whose producer we hold."""
        bot = await self.get(request["org_id"], request["bot_id"])
        if not bot.ended:
            await self._stop_here(bot)
        return {"stopped": True}

    async def _stop_here(self, bot: Bot) -> None:
        producer = self._producers.get(bot.id)
        if producer is None:
            try:
                # A producer on another process still hears it; the stream ends here regardless.
                await self._broker.publish(bot.actions_channel, encode_action(STOP_ACTION))
            except BrokerUnavailable as exc:
                log.info("bot %s: stop not published (%s); storing it", bot.public_id, exc)
            await self._store_stop(bot)
            return
        waiter = self._ended.get(bot.id)
        if waiter is None:
            waiter = self._ended[bot.id] = asyncio.get_running_loop().create_future()
        try:
            producer.send(encode_action(STOP_ACTION))  # ours: no broker in between
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), self._stop_timeout)
                return
            log.info("bot %s did not stop in time; stopping it", bot.public_id)
            await self._store_stop(bot)
        finally:
            # Whatever happened, nobody resolves this waiter any more (a stop stored
            # on another node never passes through our append).
            if self._ended.get(bot.id) is waiter:
                del self._ended[bot.id]

    async def _store_stop(self, bot: Bot) -> None:
        try:
            await self.append(
                bot, NewEvent(BotEventType.STOP, {"reason": MANUALLY_STOPPED}, closes=True)
            )
        except BotEnded:
            self._settle(bot)  # it ended elsewhere: a stop waiting here may return

    async def attach_producer(
        self, bot: Bot, conn: Connection, replaced: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Make ``conn`` the bot's producer across the cluster. The producer it
        displaces, on this node or another, has its ``replaced`` run there; so
        does ``conn`` once a later producer displaces it."""

        def lost() -> None:
            if self._producers.get(bot.id) is conn:
                del self._producers[bot.id]
            self._spawn(replaced())

        self._producers[bot.id] = conn
        await self._signals.cluster.claim(_producer_key(bot), conn.member, lost)

    async def detach_producer(self, bot: Bot, conn: Connection) -> None:
        if self._producers.get(bot.id) is conn:
            del self._producers[bot.id]
        await self._signals.cluster.release(_producer_key(bot), conn.member)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:
            log.exception("stopping or replacing a bot's producer failed")

    async def close(self) -> None:
        """Finish stops under way (each is bounded by the stop timeout)."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
