"""The channels a hub follows: a stream's topic, an organization's firehose, a relay.

Each is one broker subscription on this node shared by its local connections;
the hub (``scribeline.hub``) opens, joins and closes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from scribeline.connection import Connection
from scribeline.errors import CloseCode
from scribeline.events import StoredEvent
from scribeline.positions import Owner, StreamPosition
from scribeline.protocols import org_events
from scribeline.protocols.frames import text_frame
from scribeline.subscriptions import SubscriptionIndex

__all__ = [
    "FIREHOSE_IDLE_ROUNDS",
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
#: Position checks a firehose stream may stay idle before it is forgotten.
FIREHOSE_IDLE_ROUNDS = 3


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

    __slots__ = ("groups", "position", "stream")

    def __init__(self, stream: str) -> None:
        super().__init__()
        self.stream = stream
        # format key -> (encoder, subscribers)
        self.groups: dict[str, tuple[Encoder, set[Connection]]] = {}
        # Anchored at the head read after subscribing.
        self.position = StreamPosition(stream, Owner(self.dispatch, self.restart, self.restart))

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
    by a position per stream, with the stream's routing metadata.
    """

    __slots__ = ("encode", "index", "meta", "streams")

    def __init__(self, encode: FirehoseEncoder, per_connection: int, per_channel: int) -> None:
        super().__init__()
        self.encode = encode
        self.index: SubscriptionIndex[Connection] = SubscriptionIndex(per_connection, per_channel)
        self.streams: dict[str, StreamPosition] = {}
        self.meta: dict[str, dict[str, Any]] = {}  # stream -> its routing metadata

    def __len__(self) -> int:
        return len(self.index)

    def position(self, event: StoredEvent, meta: dict[str, Any]) -> StreamPosition:
        """The position kept for the event's stream; a stream seen first is anchored
        just before this event (what came earlier is not this node's to repair)."""
        pos = self.streams.get(event.stream)
        if pos is None:
            stream = event.stream
            owner = Owner(partial(self.dispatch, stream), _nothing, partial(self.forget, stream))
            pos = StreamPosition(stream, owner, event.seq - 1, event.epoch)
            self.streams[stream] = pos
        # The latest message's metadata renders what is emitted next (repaired
        # events included): a stream's routing metadata does not change.
        self.meta[event.stream] = meta
        return pos

    def forget(self, stream: str) -> None:
        pos = self.streams.pop(stream, None)
        self.meta.pop(stream, None)
        if pos is not None:
            pos.dropped = True

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


def _nothing() -> None:
    return None


class Relay(Channel):
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
