"""The channels a hub follows: a stream's topic, an organization's firehose, a relay.

Each is one broker subscription on this node shared by its local connections;
the hub (``scribeline.hub``) opens, joins and closes them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from scribeline.broker import unpack_with_meta
from scribeline.connection import Connection
from scribeline.errors import CloseCode
from scribeline.events import StoredEvent
from scribeline.metrics import FanOut
from scribeline.positions import Owner, Positions, StreamPosition
from scribeline.protocols import org_events
from scribeline.protocols.frames import text_frame
from scribeline.subscriptions import SubscriptionIndex

__all__ = [
    "FIREHOSE_IDLE",
    "FIREHOSE_REMEMBERED",
    "FIREHOSE_STREAMS",
    "Channel",
    "Encoder",
    "Firehose",
    "FirehoseEncoder",
    "Relay",
    "Topic",
]

#: Renders a stored event as one wire format's JSON payload (None: not shown).
Encoder = Callable[[StoredEvent], bytes | None]

#: Renders an organization event from its routing metadata (None: not shown).
FirehoseEncoder = Callable[[StoredEvent, dict[str, Any]], bytes | None]

#: Streams the firehose of one organization keeps a position for; past it the
#: least recently started are forgotten (then a lost tail of theirs is not repaired).
FIREHOSE_STREAMS = 10_000
#: Seconds a firehose stream may stay idle before its position is forgotten. Time,
#: not position checks: while the broker is down a check runs after every failed
#: reconnect, seconds apart.
FIREHOSE_IDLE = 60.0
#: Forgotten streams whose last emitted seq a firehose remembers (least recently
#: used go first): a late or repeated message of one (a publisher resending after
#: an outage) is dropped, and a stream that comes back resumes from there.
FIREHOSE_REMEMBERED = 10_000


class Channel:
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


class Topic(Channel):
    """One stream's subscribers on this node, by wire format, and its position."""

    __slots__ = ("fan_out", "groups", "position", "stream")

    def __init__(self, stream: str, fan_out: FanOut | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.fan_out = fan_out or FanOut()
        # format key -> (encoder, subscribers)
        self.groups: dict[str, tuple[Encoder, set[Connection]]] = {}
        # Anchored at the head read after subscribing.
        self.position = StreamPosition(stream, Owner(self.dispatch, self.restart, self.restart))

    def __len__(self) -> int:
        return sum(len(subs) for _, subs in self.groups.values())

    def add(self, conn: Connection, format_key: str, encoder: Encoder) -> None:
        group = self.groups.get(format_key)
        if group is None:
            self.groups[format_key] = (encoder, {conn})
        else:
            group[1].add(conn)

    def dispatch(self, event: StoredEvent) -> None:
        seq, closes = event.seq, event.closes
        offered = 0
        for encoder, subs in self.groups.values():
            payload = encoder(event)
            if payload is None:
                continue
            frame = text_frame(payload)
            offered += len(subs)
            for conn in list(subs):
                conn.offer(seq, frame, closes)
        self.fan_out.offered("stream", offered, event.ts)

    def restart(self) -> None:
        """Close every subscriber with 1013: they resume (or replay) by their position."""
        for _, subs in self.groups.values():
            for conn in list(subs):
                conn.close_soon(CloseCode.TRY_AGAIN_LATER)


class Firehose(Channel):
    """All events of one organization, to the subscribers whose filters match.

    Subscriptions are indexed by topic and filter key, so an event costs a few
    dictionary look-ups plus one write per subscriber that wants it, however
    many filters match nothing. Unsequenced across streams: events of different
    streams interleave; each stream's events are kept in order (and repaired)
    by a position per stream, with the stream's routing metadata. A stream that
    is forgotten (idle, ended, or past ``FIREHOSE_STREAMS``) leaves its last seq
    behind, so nothing it already emitted is emitted again.
    """

    __slots__ = ("encode", "fan_out", "forgotten", "index", "meta", "streams")

    def __init__(
        self,
        encode: FirehoseEncoder,
        per_connection: int,
        per_channel: int,
        fan_out: FanOut | None = None,
    ) -> None:
        super().__init__()
        self.encode = encode
        self.fan_out = fan_out or FanOut()
        self.index: SubscriptionIndex[Connection] = SubscriptionIndex(per_connection, per_channel)
        self.streams: dict[str, StreamPosition] = {}
        self.meta: dict[str, dict[str, Any]] = {}  # stream -> its routing metadata
        # stream -> (last seq emitted, epoch) when it was forgotten
        self.forgotten: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.index)

    def receive(self, positions: Positions, payload: bytes) -> None:
        """One message of the organization channel (ignored while nobody listens)."""
        if not len(self.index):
            return
        event, meta = unpack_with_meta(payload)
        pos = self.position(event, meta)
        if pos is None:
            return  # emitted before its stream was forgotten
        positions.receive(pos, event)
        if event.closes and pos.last == event.seq:
            self.forget(event.stream)  # ended: nothing more can come

    def position(self, event: StoredEvent, meta: dict[str, Any]) -> StreamPosition | None:
        """The position kept for the event's stream; None when the event is one a
        forgotten stream had already emitted. A stream seen first is anchored just
        before this event (what came earlier is not this node's to repair); a
        forgotten one resumes where it was (a gap since is read from storage)."""
        stream = event.stream
        pos = self.streams.get(stream)
        if pos is None:
            last, epoch = event.seq - 1, event.epoch
            seen = self.forgotten.get(stream)
            if seen is not None:
                if event.seq <= seen[0] and (not event.epoch or event.epoch == seen[1]):
                    self.forgotten.move_to_end(stream)
                    return None  # stale: emitted before it was forgotten
                del self.forgotten[stream]
                last, epoch = seen  # another epoch is settled with storage, as for any
            owner = Owner(partial(self.dispatch, stream), _nothing, partial(self.forget, stream))
            pos = StreamPosition(stream, owner, last, epoch)
            self.streams[stream] = pos
        # The latest message's metadata renders what is emitted next (repaired
        # events included): a stream's routing metadata does not change.
        self.meta[stream] = meta
        return pos

    def forget(self, stream: str) -> None:
        """Stop keeping a position for ``stream``; remember its last seq."""
        pos = self.streams.pop(stream, None)
        self.meta.pop(stream, None)
        if pos is None:
            return
        pos.dropped = True
        if pos.last is not None:
            self.forgotten[stream] = (pos.last, pos.epoch)
            self.forgotten.move_to_end(stream)
            if len(self.forgotten) > FIREHOSE_REMEMBERED:
                self.forgotten.popitem(last=False)

    def forget_idle(self, before: float) -> None:
        """Forget streams that have not moved since loop time ``before`` (and wait
        for nothing), then the least recently started past ``FIREHOSE_STREAMS``."""
        streams = self.streams
        idle = [s for s, p in streams.items() if p.moved_at <= before and not p.behind()]
        idle += list(streams)[: max(0, len(streams) - len(idle) - FIREHOSE_STREAMS)]
        for stream in idle:
            self.forget(stream)

    def dispatch(self, stream: str, event: StoredEvent) -> None:
        meta = self.meta.get(stream, {})
        topic = org_events.topic_of(event.type, meta)
        if topic is None:
            return
        subscribers = self.index.match(topic, org_events.match_keys(meta))
        if not subscribers:
            return
        rendered = self.encode(event, meta)
        if rendered is None:
            return
        frame = text_frame(rendered)  # encoded once for every subscriber
        for conn in tuple(subscribers):
            conn.write(frame)
        self.fan_out.offered("organization", len(subscribers), event.ts)


def _nothing() -> None:
    return None


class Relay(Channel):
    """Unsequenced, unstored messages (a bot's actions) passed on as they come."""

    __slots__ = ("fan_out", "subscribers")

    def __init__(self, fan_out: FanOut | None = None) -> None:
        super().__init__()
        self.subscribers: set[Connection] = set()
        self.fan_out = fan_out or FanOut()

    def __len__(self) -> int:
        return len(self.subscribers)

    def dispatch(self, payload: bytes) -> None:
        frame = text_frame(payload)
        for conn in list(self.subscribers):
            conn.write(frame)
        self.fan_out.offered("relay", len(self.subscribers))
