"""A node's position in each stream it follows, kept gap-free against storage.

The broker may lose, duplicate or reorder messages (two nodes appending to
one call publish seq 7 and 6 in either order; Redis pub/sub drops whatever is
published while a node reconnects). Storage assigned every seq and holds
every event, so each followed stream gets a :class:`StreamPosition` (the last
seq emitted on this node, the stream's epoch, events held out of order) and
:class:`Positions` turns deliveries into an exactly-once, in-order sequence:

* ``seq <= last``: stale (already emitted, maybe repaired from storage): dropped.
* ``seq > last + 1``: held. If the gap is still open after ``reorder_wait``
  (it usually closes by itself within a millisecond), the missing range is
  read from storage, once for the whole node however many connections follow
  the stream.
* A lost *last* event is revealed by no later one, so :meth:`Positions.check`
  compares positions with ``EventLog.heads`` (one query for every stream) and
  reads any missing tail; the hub runs it after every broker reconnect or
  overflow and periodically.
* A different epoch (the stream's storage was reset and its seqs restarted) is
  confirmed with storage first, since a late message of the old epoch can still
  be in flight. Once confirmed, the owner's ``reset`` runs (the hub closes the
  stream's subscribers with 1013, so they resume or replay by the recovery
  rules) and the position re-anchors at the stream's current head.

If storage cannot supply what the broker announced, or too many events are
held, the owner's ``fail`` runs (the hub closes the subscribers with 1013;
they resume from their last seq, so nothing is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from scribeline.events import Position, StoredEvent
from scribeline.storage import EventLog

__all__ = ["MAX_HELD", "REPAIR_PAGE", "Owner", "Positions", "StreamPosition"]

log = logging.getLogger(__name__)

#: Out-of-order events one stream may hold while its gap is repaired.
MAX_HELD = 10_000
#: Events read from storage per query while repairing.
REPAIR_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class Owner:
    """What a stream's position reports to: ``emit`` the next event in order;
    ``reset`` when the stream's epoch changed; ``fail`` when order cannot be kept."""

    emit: Callable[[StoredEvent], None]
    reset: Callable[[], None]
    fail: Callable[[], None]


class StreamPosition:
    """Where this node stands in one stream. ``last`` is None until anchored."""

    __slots__ = (
        "dropped",
        "epoch",
        "gap_at",
        "held",
        "last",
        "moved_at",
        "owner",
        "repair",
        "stream",
        "suspect",
        "target",
    )

    def __init__(self, stream: str, owner: Owner, last: int | None = None, epoch: str = "") -> None:
        self.stream = stream
        self.owner = owner
        self.last = last
        self.epoch = epoch
        self.held: dict[int, StoredEvent] = {}
        self.target = 0  # a head seen in storage that has not been reached yet
        self.gap_at = 0.0  # when the current gap (or unreached target) was noticed
        self.suspect = False  # a delivery carried another epoch: ask storage
        self.repair: asyncio.Task[None] | None = None
        self.moved_at = _now()  # loop time it was created or last moved (idle eviction)
        self.dropped = False  # no longer followed: a running repair stops

    def behind(self) -> bool:
        """Whether events are known to exist that have not been emitted."""
        return bool(self.held) or (self.last is not None and self.target > self.last)


class Positions:
    """Orders deliveries and repairs positions from storage (one task per stream)."""

    def __init__(self, storage: EventLog, reorder_wait: float = 0.05) -> None:
        self._storage = storage
        self._reorder_wait = reorder_wait
        self._repairs: set[asyncio.Task[None]] = set()
        #: Streams repaired from storage (reads of missing events that found some).
        self.repaired = 0
        #: Gaps found: a delivery past the next seq, or storage ahead at a check.
        self.gaps = 0

    def receive(self, pos: StreamPosition, event: StoredEvent) -> None:
        """One delivery from the broker."""
        if event.epoch and pos.epoch and event.epoch != pos.epoch:
            # Storage decides which epoch is current; the event is read again if so.
            pos.suspect = True
            self._schedule(pos, now=True)
            return
        last = pos.last
        if last is not None:
            if event.seq == last + 1 and not pos.held and (pos.epoch or not event.epoch):
                pos.last = event.seq
                pos.moved_at = _now()
                pos.owner.emit(event)
                return
            if event.seq <= last:
                return  # stale
        if len(pos.held) >= MAX_HELD:
            self._fail(pos, "too many events held out of order")
            return
        if not pos.held:
            pos.gap_at = asyncio.get_running_loop().time()
            if last is not None and event.seq > last + 1:
                self.gaps += 1
        pos.held[event.seq] = event
        if last is None:
            return
        if event.seq == last + 1:
            self._release(pos)  # the gap closed by itself
        else:
            self._schedule(pos)  # read storage after the reorder wait, unless it closes

    def anchor(self, pos: StreamPosition, head: Position) -> None:
        """Set a new position's head (read after subscribing) and emit what it held."""
        pos.last = head.seq
        pos.epoch = head.epoch or pos.epoch
        pos.moved_at = _now()
        self._release(pos)

    async def check(self, positions: Iterable[StreamPosition]) -> None:
        """Compare anchored positions with storage in one query; repair any behind."""
        anchored = [p for p in positions if p.last is not None and not p.dropped]
        if not anchored:
            return
        heads = await self._storage.heads({p.stream for p in anchored})
        now = asyncio.get_running_loop().time()
        for pos in anchored:
            head = heads.get(pos.stream)
            if head is None or pos.dropped or pos.last is None:
                continue
            if head.epoch and pos.epoch and head.epoch != pos.epoch:
                pos.suspect = True
                self._schedule(pos, now=True)
            elif head.seq > max(pos.last, pos.target):
                if not pos.behind():
                    pos.gap_at = now  # may still be in flight: give it the reorder wait
                    self.gaps += 1
                pos.target = head.seq
                self._schedule(pos)

    def drop(self, pos: StreamPosition) -> None:
        """Stop following ``pos`` (its repair stops at its next step)."""
        pos.dropped = True
        pos.held.clear()

    async def close(self) -> None:
        for task in list(self._repairs):
            task.cancel()
        for task in list(self._repairs):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- ordering and repair -------------------------------------------------------

    def _release(self, pos: StreamPosition) -> None:
        """Emit held events that are next in line; schedule a repair for the rest."""
        held = pos.held
        assert pos.last is not None
        epoch = pos.epoch
        if not epoch and any(e.epoch for e in held.values()):
            # Anchored before the stream had events: learn its epoch from storage
            # rather than from a message, which may be a late one of an old epoch.
            pos.suspect = True
            self._schedule(pos, now=True)
            return
        for seq in [s for s, e in held.items() if s <= pos.last or (e.epoch and e.epoch != epoch)]:
            del held[seq]
        while pos.last + 1 in held:
            event = held.pop(pos.last + 1)
            pos.last = event.seq
            pos.moved_at = _now()
            pos.owner.emit(event)
        if pos.behind():
            self._schedule(pos)

    def _schedule(self, pos: StreamPosition, *, now: bool = False) -> None:
        if now:
            pos.gap_at = 0.0
        if pos.repair is None and not pos.dropped:
            task = asyncio.get_running_loop().create_task(self._repair(pos))
            pos.repair = task
            self._repairs.add(task)
            task.add_done_callback(self._repairs.discard)

    async def _repair(self, pos: StreamPosition) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not pos.dropped:
                if pos.suspect:
                    await self._verify_epoch(pos)
                    continue
                if pos.last is None or not pos.behind():
                    return
                wait = pos.gap_at + self._reorder_wait - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # the gap may close by itself
                    continue
                if not await self._read_missing(pos):
                    self._fail(pos, "storage lacks events the broker announced")
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not repair stream %s from storage", pos.stream)
            self._fail(pos, "storage read failed")
        finally:
            pos.repair = None

    async def _read_missing(self, pos: StreamPosition) -> bool:
        """Read one page of what is missing; whether it moved the position."""
        assert pos.last is not None
        upto = min(pos.held) - 1 if pos.held else pos.target
        missing = await self._storage.read(
            pos.stream, after=pos.last, limit=min(upto - pos.last, REPAIR_PAGE)
        )
        if pos.dropped:
            return True
        before = pos.last
        for event in missing:
            if event.epoch and pos.epoch and event.epoch != pos.epoch:
                pos.suspect = True
                return True
            if event.seq == pos.last + 1:
                pos.last = event.seq
                pos.owner.emit(event)
        if pos.last == before:
            return False
        self.repaired += 1
        pos.moved_at = _now()
        if pos.held:
            self._release(pos)  # emits what is now in line
        return True

    async def _verify_epoch(self, pos: StreamPosition) -> None:
        pos.suspect = False
        head = (await self._storage.heads([pos.stream]))[pos.stream]
        if pos.dropped or not head.epoch:
            return
        if not pos.epoch:
            pos.epoch = head.epoch  # the stream had no events when it was anchored
        if head.epoch == pos.epoch:
            if pos.held:
                self._release(pos)  # drops held messages of another (older) epoch
            return
        log.warning(
            "stream %s changed epoch (%s -> %s); its subscribers start again",
            pos.stream,
            pos.epoch,
            head.epoch,
        )
        pos.held.clear()
        pos.target = 0
        pos.owner.reset()
        # Connections that attach from now on read a head at least this one.
        pos.epoch, pos.last = head.epoch, head.seq

    def _fail(self, pos: StreamPosition, why: str) -> None:
        log.error("stream %s cannot be kept in order (%s)", pos.stream, why)
        pos.held.clear()
        pos.target = 0
        pos.owner.fail()


def _now() -> float:
    return asyncio.get_running_loop().time()
