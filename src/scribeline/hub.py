"""Stream fan-out: one broker subscription per stream per process.

For each stream with local subscribers the hub keeps a ``Topic``. The topic
turns what the broker delivers into a gap-free, duplicate-free sequence: an
event whose seq is not the next one is held while the missing range is read
from storage (a lost or reordered broker message), stale seqs are dropped.
Each event is encoded once per wire format and the same frame bytes are
offered to every subscriber of that format; offering never awaits a socket.

Joining (DESIGN.md): ``join`` attaches first, holding live events on the
connection, then reads the stream's position (its head, or a snapshot that
holds it), lets the endpoint send what precedes live events (a preamble,
history up to that position) and switches the connection to live with
``Connection.go_live``. Because the topic knows the stream head from after its
broker subscription, history (read later) always reaches at least the first
event the connection holds, so nothing falls between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from scribeline.broker import Broker, unpack, unpack_with_meta
from scribeline.connection import Connection
from scribeline.errors import CloseCode
from scribeline.events import Position, StoredEvent
from scribeline.protocols import org_events
from scribeline.protocols.frames import text_frame
from scribeline.storage import EventLog
from scribeline.subscriptions import SubscriptionIndex

__all__ = ["CatchUp", "CaughtUp", "Encoder", "FirehoseEncoder", "Hub"]

log = logging.getLogger(__name__)

#: Renders a stored event as one wire format's JSON payload (None: not shown).
Encoder = Callable[[StoredEvent], bytes | None]

#: Renders an organization event from its routing metadata (None: not shown).
FirehoseEncoder = Callable[[StoredEvent, dict[str, Any]], bytes | None]

#: Out-of-order events a topic holds while it reads a gap from storage.
MAX_HELD = 10_000

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """What a joining connection was sent before going live.

    ``covered`` is the last seq the join accounts for (sent as history, skipped
    as replaced, or at or before the client's resume point); held live events
    up to it are never sent. ``ended``: the stream has ended, so the connection
    closes normally once the held events after ``covered`` are out.
    """

    covered: int
    ended: bool = False


#: Sends a joining connection what precedes its live events (a preamble, then
#: history) given what was read after attaching; None when the connection is not
#: to follow the stream after all (it is detached, nothing is raised).
CatchUp = Callable[[S], Awaitable[CaughtUp | None]]


class _Channel:
    """A broker channel this process follows for some local connections.

    ``ready`` resolves once the broker subscription is in place (or fails);
    ``unsubscribed`` is set while the last subscriber's unsubscribe runs.
    """

    __slots__ = ("ready", "unsubscribed")

    def __init__(self) -> None:
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unsubscribed: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        raise NotImplementedError


C = TypeVar("C", bound=_Channel)


class _Topic(_Channel):
    __slots__ = ("groups", "held", "last", "stream")

    def __init__(self, stream: str) -> None:
        super().__init__()
        self.stream = stream
        # format key -> (encoder, subscribers)
        self.groups: dict[str, tuple[Encoder, set[Connection]]] = {}
        self.last: int | None = None  # last seq dispatched; None until the head is known
        self.held: dict[int, StoredEvent] = {}

    def __len__(self) -> int:
        return sum(len(subs) for _, subs in self.groups.values())

    def dispatch(self, event: StoredEvent) -> None:
        for encoder, subs in self.groups.values():
            payload = encoder(event)
            if payload is None:
                continue
            frame = text_frame(payload)
            for conn in list(subs):
                conn.offer(event.seq, frame, event.closes)


class _Firehose(_Channel):
    """All events of one organization, to the subscribers whose filters match.

    Subscriptions are indexed by topic and filter key, so an event costs a few
    dictionary look-ups plus one write per subscriber that wants it, however
    many filters match nothing. Unsequenced: events of different streams
    interleave; each stream's events keep their order (the broker keeps
    per-channel order).
    """

    __slots__ = ("index",)

    def __init__(self, per_connection: int, per_channel: int) -> None:
        super().__init__()
        self.index: SubscriptionIndex[Connection] = SubscriptionIndex(per_connection, per_channel)

    def __len__(self) -> int:
        return len(self.index)

    def dispatch(self, encode: FirehoseEncoder, payload: bytes) -> None:
        event, meta = unpack_with_meta(payload)
        topic = org_events.topic_of(event.type, meta)
        if topic is None:
            return
        subscribers = self.index.match(topic, org_events.match_keys(meta))
        if not subscribers:
            return
        rendered = encode(event, meta)
        if rendered is None:
            return
        frame = text_frame(rendered)  # encoded once for every subscriber
        for conn in tuple(subscribers):
            conn.write(frame)


class _Relay(_Channel):
    """Unsequenced, unstored messages (a bot's actions) passed on as they come."""

    __slots__ = ("subscribers",)

    def __init__(self) -> None:
        super().__init__()
        self.subscribers: set[Connection] = set()

    def __len__(self) -> int:
        return len(self.subscribers)

    def dispatch(self, payload: bytes) -> None:
        frame = text_frame(payload)
        for conn in list(self.subscribers):
            conn.write(frame)


class Hub:
    """Maps streams to the local connections that follow them."""

    def __init__(
        self,
        broker: Broker,
        storage: EventLog,
        firehose_encoder: FirehoseEncoder,
        *,
        subscriptions_per_connection: int = 100,
        subscriptions_per_organization: int = 10_000,
    ) -> None:
        self._firehose_limits = (subscriptions_per_connection, subscriptions_per_organization)
        self._broker = broker
        self._storage = storage
        self._topics: dict[str, _Topic] = {}
        self._firehoses: dict[str, _Firehose] = {}
        self._relays: dict[str, _Relay] = {}
        self._encode_firehose = firehose_encoder
        self._fills: set[asyncio.Task[None]] = set()

    @property
    def topics(self) -> int:
        """Broker subscriptions this process holds (streams and organizations)."""
        return len(self._topics) + len(self._firehoses) + len(self._relays)

    def deliver(self, channel: str, payload: bytes) -> None:
        """The broker's callback: one published event."""
        topic = self._topics.get(channel)
        if topic is not None:
            self._receive(topic, unpack(payload))
            return
        firehose = self._firehoses.get(channel)
        if firehose is not None:
            if len(firehose):
                firehose.dispatch(self._encode_firehose, payload)
            return
        relay = self._relays.get(channel)
        if relay is not None:
            relay.dispatch(payload)

    async def attach_relay(self, channel: str, conn: Connection) -> None:
        """Write every message published on ``channel`` to ``conn`` as a text frame."""
        await self._enter(self._relays, channel, _Relay, lambda r: r.subscribers.add(conn))

    async def detach_relay(self, channel: str, conn: Connection) -> None:
        relay = self._relays.get(channel)
        if relay is not None:
            relay.subscribers.discard(conn)
            await self._close_if_unused(self._relays, channel, relay)

    async def subscribe_firehose(
        self, channel: str, conn: Connection, topic: str, filter_: str
    ) -> None:
        """Deliver ``channel``'s events of ``topic`` that pass ``filter_`` to ``conn``;
        ``RateLimited`` past the per-connection or per-channel bound."""
        key = org_events.filter_key(filter_)
        await self._enter(
            self._firehoses,
            channel,
            lambda: _Firehose(*self._firehose_limits),
            lambda f: f.index.add(conn, topic, key),
        )

    async def unsubscribe_firehose(
        self, channel: str, conn: Connection, topic: str, filter_: str
    ) -> None:
        firehose = self._firehoses.get(channel)
        if firehose is not None:
            firehose.index.remove(conn, topic, org_events.filter_key(filter_))
            await self._close_if_unused(self._firehoses, channel, firehose)

    async def detach_firehose(self, channel: str, conn: Connection) -> None:
        """Remove every subscription ``conn`` holds on ``channel``."""
        firehose = self._firehoses.get(channel)
        if firehose is not None:
            firehose.index.drop(conn)
            await self._close_if_unused(self._firehoses, channel, firehose)

    async def join(
        self,
        stream: str,
        conn: Connection,
        format_key: str,
        encoder: Encoder,
        catch_up: CatchUp[Position],
    ) -> bool:
        """Join ``conn`` to ``stream`` with nothing lost or repeated between history
        and live events: attach, read the head, ``catch_up`` to it, go live.

        Whether the connection now follows the stream (False: ``catch_up``
        declined). On any error it is detached again and the error raised.
        """
        return await self.join_snapshot(
            stream, conn, format_key, encoder, partial(self._storage.head, stream), catch_up
        )

    async def join_snapshot(
        self,
        stream: str,
        conn: Connection,
        format_key: str,
        encoder: Encoder,
        snapshot: Callable[[], Awaitable[S]],
        catch_up: CatchUp[S],
    ) -> bool:
        """:meth:`join`, with the stream's position read by ``snapshot`` (for a
        state read together with the head, in one transaction)."""
        await self.attach(stream, conn, format_key, encoder)
        try:
            caught = await catch_up(await snapshot())
        except BaseException:
            await self.detach(stream, conn)
            raise
        if caught is None:
            await self.detach(stream, conn)
            return False
        conn.go_live(caught.covered)
        if caught.ended:
            conn.close_soon(CloseCode.NORMAL)
        return True

    async def attach(
        self, stream: str, conn: Connection, format_key: str, encoder: Encoder
    ) -> None:
        """Start holding ``stream``'s live events on ``conn`` (which is joining);
        the lower half of :meth:`join`, for a caller that goes live itself."""
        conn.hold()
        topic, opened = await self._enter(
            self._topics,
            stream,
            lambda: _Topic(stream),
            lambda t: self._add(t, conn, format_key, encoder),
            self._start_topic,
        )
        if opened:
            self._release_held(topic)

    async def detach(self, stream: str, conn: Connection) -> None:
        """Stop delivering to ``conn``; the last one out unsubscribes."""
        topic = self._topics.get(stream)
        if topic is not None:
            for _, subs in topic.groups.values():
                subs.discard(conn)
            await self._close_if_unused(self._topics, stream, topic)

    # -- one broker subscription per channel per process ----------------------

    async def _enter(
        self,
        channels: dict[str, C],
        name: str,
        make: Callable[[], C],
        add: Callable[[C], None],
        start: Callable[[C], Awaitable[None]] | None = None,
    ) -> tuple[C, bool]:
        """Add a subscriber (``add``) to the channel ``name``, opening it with ``make``
        and a broker subscription if there is none; whether it was opened here."""
        channel = await self._current(channels, name)
        if channel is None:
            channel = make()
            add(channel)
            await self._open(channels, name, channel, start)
            return channel, True
        add(channel)
        await self._joined(channel)
        return channel, False

    @staticmethod
    async def _current(channels: dict[str, C], name: str) -> C | None:
        """The live channel of that name, once any previous one has gone away."""
        channel = channels.get(name)
        while channel is not None and channel.unsubscribed is not None:
            await channel.unsubscribed
            channel = channels.get(name)
        return channel

    async def _open(
        self,
        channels: dict[str, C],
        name: str,
        channel: C,
        start: Callable[[C], Awaitable[None]] | None = None,
    ) -> None:
        """Register ``channel`` and subscribe; connections that join meanwhile wait on
        ``ready``, which carries a failure to them too."""
        channels[name] = channel
        try:
            await self._broker.subscribe(name)
            if start is not None:
                await start(channel)
        except BaseException as exc:
            channel.ready.set_exception(exc)
            channel.ready.exception()  # retrieved: the caller sees it here
            channels.pop(name, None)
            raise
        channel.ready.set_result(None)

    @staticmethod
    async def _joined(channel: _Channel) -> None:
        if not channel.ready.done():
            await asyncio.shield(channel.ready)
        channel.ready.result()  # raises if the channel failed to start

    async def _close_if_unused(self, channels: dict[str, C], name: str, channel: C) -> None:
        """The last subscriber out unsubscribes."""
        if len(channel) or channel.unsubscribed is not None:
            return
        channel.unsubscribed = asyncio.get_running_loop().create_future()
        try:
            await self._broker.unsubscribe(name)
        finally:
            channels.pop(name, None)
            channel.unsubscribed.set_result(None)

    async def _start_topic(self, topic: _Topic) -> None:
        # The head is read after subscribing, so history read later reaches every
        # event the topic will hold for a joining connection.
        topic.last = (await self._storage.head(topic.stream)).seq

    async def close(self) -> None:
        for task in list(self._fills):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    def _add(topic: _Topic, conn: Connection, format_key: str, encoder: Encoder) -> None:
        group = topic.groups.get(format_key)
        if group is None:
            topic.groups[format_key] = (encoder, {conn})
        else:
            group[1].add(conn)

    def _receive(self, topic: _Topic, event: StoredEvent) -> None:
        last = topic.last
        if last is None or event.seq > last + 1:
            if len(topic.held) >= MAX_HELD:
                self._fail(topic)
                return
            topic.held[event.seq] = event
            if last is not None and len(topic.held) == 1:
                self._fill(topic)
            return
        if event.seq <= last:
            return
        topic.last = event.seq
        topic.dispatch(event)
        if topic.held:
            self._release_held(topic)

    def _release_held(self, topic: _Topic) -> None:
        """Dispatch held events that are now next in line; fill any remaining gap."""
        held = topic.held
        assert topic.last is not None
        for seq in [s for s in held if s <= topic.last]:
            del held[seq]
        while topic.last + 1 in held:
            event = held.pop(topic.last + 1)
            topic.last = event.seq
            topic.dispatch(event)
        if held:
            self._fill(topic)

    def _fill(self, topic: _Topic) -> None:
        task = asyncio.get_running_loop().create_task(self._read_gap(topic))
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _read_gap(self, topic: _Topic) -> None:
        if topic.last is None or not topic.held:
            return
        upto = min(topic.held)
        try:
            missing = await self._storage.read(
                topic.stream, after=topic.last, limit=upto - topic.last - 1
            )
        except Exception:
            log.exception("could not read a gap of %s from storage", topic.stream)
            self._fail(topic)
            return
        if self._topics.get(topic.stream) is not topic:
            return
        before = topic.last
        for event in missing:
            if topic.last is not None and event.seq == topic.last + 1:
                topic.last = event.seq
                topic.dispatch(event)
        if topic.last == before and topic.held and min(topic.held) > (before or 0) + 1:
            self._fail(topic)  # storage lacks what the broker announced: do not spin
            return
        self._release_held(topic)

    @staticmethod
    def _fail(topic: _Topic) -> None:
        # Subscribers resume from their last seq on reconnect; nothing is lost.
        log.error("stream %s cannot be kept in order; closing its subscribers", topic.stream)
        topic.held.clear()
        for _, subs in topic.groups.values():
            for conn in list(subs):
                conn.close_soon(CloseCode.TRY_AGAIN_LATER)
