"""Stream fan-out: one broker subscription per stream per process.

For each stream with local subscribers the hub keeps a ``Topic`` with this
node's position in the stream (:mod:`scribeline.positions`): what the broker
delivers becomes a gap-free, duplicate-free sequence (stale seqs dropped,
gaps read from storage after a short reorder wait, once per node however many
connections follow the stream). Each event is encoded once per wire format
and the same frame bytes are offered to every subscriber of that format;
offering never awaits a socket.

Losses the broker cannot reveal by a later message (a lost *last* event, a
pub/sub connection that was down) are found by a position check: one
``EventLog.heads`` query over every live stream, run when the broker reports a
possible gap (``on_gap``: after a reconnect or an overflow) and every
``position_check_interval`` seconds.

A stream whose epoch changed (its storage was reset; seqs started again) has
its subscribers closed with 1013 TRY_AGAIN_LATER: they reconnect with their
``since`` and ``epoch``, and the join's recovery rules (``recovery.start_after``)
replay the new epoch from its start. Closing, rather than replaying into the
open connections, keeps one rule for every position a client holds.

The organization channel (the firehose) interleaves streams, so it keeps a
position per stream it has seen (anchored at the first event seen of each):
a gap or a lost tail of a seen stream is repaired from storage and rendered
with that stream's routing metadata. A stream idle for ``firehose_idle``
seconds, or ended, is forgotten but its last seq is remembered: a message
repeated later is not shown twice, and a stream that resumes is repaired from
there. Its known limit: events of a stream published before the node first
saw any event of it are not repaired.
Relays (a bot's actions) are neither stored nor sequenced: a lost message
there is lost (the stop handshake has its own timeout).

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
from typing import TypeVar

from scribeline.broker import Broker, unpack
from scribeline.connection import Connection
from scribeline.errors import CloseCode
from scribeline.events import Position
from scribeline.hub_channels import (
    FIREHOSE_IDLE,
    Channel,
    Encoder,
    Firehose,
    FirehoseEncoder,
    Relay,
    Topic,
)
from scribeline.metrics import FanOut
from scribeline.positions import Positions
from scribeline.protocols import org_events
from scribeline.storage import EventLog

__all__ = ["CatchUp", "CaughtUp", "Encoder", "FirehoseEncoder", "Hub"]

log = logging.getLogger(__name__)

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


C = TypeVar("C", bound=Channel)


class Hub:
    """Maps streams to the local connections that follow them.

    ``reorder_wait``: seconds a gap may stay open before it is read from storage
    (0 suits the in-process broker; across nodes two publishers can swap the
    order of a stream's events). ``position_check_interval``: seconds between
    two position checks of every live stream, once :meth:`start` has run.
    ``firehose_idle``: seconds an organization channel keeps an idle stream's position.
    """

    def __init__(
        self,
        broker: Broker,
        storage: EventLog,
        firehose_encoder: FirehoseEncoder,
        *,
        subscriptions_per_connection: int = 100,
        subscriptions_per_organization: int = 10_000,
        reorder_wait: float = 0.0,
        position_check_interval: float = 20.0,
        firehose_idle: float = FIREHOSE_IDLE,
    ) -> None:
        #: Frames offered to subscribers, read by metrics (``Metrics.watch`` times them).
        self.fan_out = FanOut()
        self._firehose_limits = (subscriptions_per_connection, subscriptions_per_organization)
        self._broker = broker
        self._storage = storage
        self._topics: dict[str, Topic] = {}
        self._firehoses: dict[str, Firehose] = {}
        self._relays: dict[str, Relay] = {}
        self._encode_firehose = firehose_encoder
        self._positions = Positions(storage, reorder_wait)
        self._check_interval = position_check_interval
        self._firehose_idle = firehose_idle
        self._checker: asyncio.Task[None] | None = None
        self._check_requested = asyncio.Event()
        self._checks = 0
        self._closed = False

    @property
    def topics(self) -> int:
        """Broker subscriptions this process holds (streams and organizations)."""
        return len(self._topics) + len(self._firehoses) + len(self._relays)

    def counters(self) -> dict[str, int]:
        """Position checks run, gaps found and streams repaired from storage (for metrics)."""
        positions = self._positions
        return {
            "position_checks": self._checks,
            "gaps": positions.gaps,
            "repairs": positions.repaired,
        }

    def deliver(self, channel: str, payload: bytes) -> None:
        """The broker's callback: one published event."""
        topic = self._topics.get(channel)
        if topic is not None:
            self._positions.receive(topic.position, unpack(payload))
            return
        firehose = self._firehoses.get(channel)
        if firehose is not None:
            firehose.receive(self._positions, payload)
            return
        relay = self._relays.get(channel)
        if relay is not None:
            relay.dispatch(payload)

    def on_gap(self) -> None:
        """The broker's callback: messages may have been lost; check every position."""
        self._check_requested.set()
        self.start()

    def start(self) -> None:
        """Check positions every ``position_check_interval`` seconds (and on gaps)."""
        if self._checker is None and not self._closed:
            self._start_checker()

    def _start_checker(self) -> None:
        self._checker = asyncio.get_running_loop().create_task(self._check_forever())

    async def _check_forever(self) -> None:
        while True:
            # A gap report during a check asks for one more check, not one each.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_interval):
                    await self._check_requested.wait()
            self._check_requested.clear()
            try:
                await self.check_positions()
            except Exception:
                log.exception("position check failed; retried at the next one")

    async def check_positions(self) -> None:
        """Compare every live stream's position with storage and repair what is
        behind (a lost last event, messages lost while the broker was away)."""
        self._checks += 1
        idle_since = asyncio.get_running_loop().time() - self._firehose_idle
        for firehose in self._firehoses.values():
            firehose.forget_idle(idle_since)
        positions = [t.position for t in self._topics.values() if t.ready.done()]
        for firehose in self._firehoses.values():
            positions.extend(firehose.streams.values())
        await self._positions.check(positions)

    async def attach_relay(self, channel: str, conn: Connection) -> None:
        """Write every message published on ``channel`` to ``conn`` as a text frame."""
        await self._enter(
            self._relays, channel, lambda: Relay(self.fan_out), lambda r: r.subscribers.add(conn)
        )

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
            lambda: Firehose(self._encode_firehose, *self._firehose_limits, self.fan_out),
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
        await self._enter(
            self._topics,
            stream,
            lambda: Topic(stream, self.fan_out),
            lambda t: t.add(conn, format_key, encoder),
            self._start_topic,
        )

    async def detach(self, stream: str, conn: Connection) -> None:
        """Stop delivering to ``conn``; the last one out unsubscribes."""
        topic = self._topics.get(stream)
        if topic is not None:
            for _, subs in topic.groups.values():
                subs.discard(conn)
            await self._close_if_unused(self._topics, stream, topic)

    def close_stream(self, stream: str, code: int = CloseCode.NORMAL) -> int:
        """Close every local connection that follows ``stream`` (its call was
        deleted), joining or live; how many there were."""
        topic = self._topics.get(stream)
        conns = set() if topic is None else {c for _, subs in topic.groups.values() for c in subs}
        for conn in conns:
            conn.close_soon(code)
        return len(conns)

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
        subscribed = False
        try:
            await self._broker.subscribe(name)
            subscribed = True
            if start is not None:
                await start(channel)
        except BaseException as exc:
            channel.ready.set_exception(exc)
            channel.ready.exception()  # retrieved: the caller sees it here
            if not subscribed:
                channels.pop(name, None)
            else:  # no subscriber is left to unsubscribe it; the error is the one to raise
                with contextlib.suppress(Exception):
                    await self._leave(channels, name, channel)
            raise
        channel.ready.set_result(None)

    @staticmethod
    async def _joined(channel: Channel) -> None:
        if not channel.ready.done():
            await asyncio.shield(channel.ready)
        channel.ready.result()  # raises if the channel failed to start

    async def _close_if_unused(self, channels: dict[str, C], name: str, channel: C) -> None:
        """The last subscriber out unsubscribes."""
        if len(channel) or channel.unsubscribed is not None:
            return
        if isinstance(channel, Topic):
            self._positions.drop(channel.position)
        elif isinstance(channel, Firehose):
            for stream in list(channel.streams):
                channel.forget(stream)
        await self._leave(channels, name, channel)

    async def _leave(self, channels: dict[str, C], name: str, channel: C) -> None:
        """Unsubscribe; whoever joins ``name`` meanwhile waits for it (see ``_current``)."""
        channel.unsubscribed = asyncio.get_running_loop().create_future()
        try:
            await self._broker.unsubscribe(name)
        finally:
            channels.pop(name, None)
            channel.unsubscribed.set_result(None)

    async def _start_topic(self, topic: Topic) -> None:
        # The head is read after subscribing, so history read later reaches every
        # event the topic will hold for a joining connection.
        self._positions.anchor(topic.position, await self._storage.head(topic.stream))

    async def close(self) -> None:
        self._closed = True  # a broker still reconnecting may report gaps meanwhile
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
        await self._positions.close()
