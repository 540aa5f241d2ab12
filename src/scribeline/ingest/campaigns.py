"""The campaign service: campaigns, contacts, outcomes and coalesced progress.

Progress is coalesced where changes happen: after a contact changes, a
``progress`` event (with counters computed by storage) is appended at once if
none was appended in the last ``interval`` seconds, else once the interval
has passed. The interval is the campaign's turn in the cluster
(``Cluster.coalesce``), so nodes together append at most one per interval;
a node that finds the turn taken tries again when it ends, because the other
node's progress may have been counted before this node's change. Progress
events are stored like every other event, so every subscriber and every node
sees the same ones.

Contact changes arrive here already stored (storage appends each contact's
``contact_update``, and ``contact_completed`` for an outcome, in the
transaction of the change): ``published`` publishes them, from outcomes
recorded here and from linked calls (the calls service), and schedules the
progress that follows.

A progress append that storage refuses (a PostgreSQL blip) is tried again
after ``PROGRESS_RETRY_DELAYS`` (about 20 s in all); past that it waits for
the campaign's next change. A node that stops cleanly appends the progress
it still had to come at once, without waiting for the turn: no other node
knows of it. A node that crashes loses it (known limit): the campaign's next
change, on any node, brings progress again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from scribeline.cluster import Cluster
from scribeline.domain import Campaign, Contact, Counters
from scribeline.errors import InvalidRequest, NotFound
from scribeline.events import EventType, Position, StoredEvent
from scribeline.ingest.publish import Publisher
from scribeline.storage import Storage

__all__ = ["CampaignService"]

log = logging.getLogger(__name__)

#: Seconds before each new attempt at a progress append that failed.
PROGRESS_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def campaign_meta(campaign: Campaign) -> dict[str, int]:
    """What the organization event stream filters campaign events on."""
    return {"campaign_id": campaign.id, "assistant_id": campaign.assistant_id}


class CampaignService:
    """Campaign lifecycle for the organizations' REST calls and linked calls."""

    def __init__(
        self, storage: Storage, publisher: Publisher, interval: float, cluster: Cluster
    ) -> None:
        self._storage = storage
        self._publisher = publisher
        self._interval = interval
        self._cluster = cluster
        #: Campaigns with progress to come: the campaign and the timer of the next
        #: try, or None while the turn is being asked for.
        self._scheduled: dict[int, tuple[Campaign, asyncio.TimerHandle | None]] = {}
        #: Campaigns whose failed progress append waits to be tried again (that
        #: attempt reads the counters as of then, so it covers later changes).
        self._retrying: set[int] = set()
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, org_id: int, campaign_id: int) -> Campaign:
        campaign = await self._storage.get_campaign(org_id, campaign_id)
        if campaign is None:
            raise NotFound(f"Campaign {campaign_id} not found")
        return campaign

    async def counters(self, campaign: Campaign) -> Counters:
        """The campaign's contact counters as of now."""
        return await self._storage.counters(campaign.id)

    async def list_campaigns(self, org_id: int, limit: int) -> list[tuple[Campaign, Counters]]:
        """The organization's newest campaigns with their counters (two queries,
        however many campaigns)."""
        campaigns = await self._storage.list_campaigns(org_id, limit)
        counters = await self._storage.counters_of_campaigns([c.id for c in campaigns])
        return [(c, counters[c.id]) for c in campaigns]

    async def contacts(self, campaign: Campaign, after: int, limit: int) -> list[Contact]:
        """Up to ``limit`` of the campaign's contacts with ids above ``after``, in id order."""
        return await self._storage.list_contacts(campaign.id, after, limit)

    async def snapshot(self, campaign: Campaign) -> tuple[Position, Counters]:
        """The campaign stream's head and the counters, as of one moment."""
        return await self._storage.campaign_snapshot(campaign.id)

    async def completion(self, campaign: Campaign, head: Position) -> StoredEvent | None:
        """The ``campaign_completed`` event if it is the stream's event at ``head``."""
        if head.seq <= 0:
            return None
        (last,) = await self._storage.read(campaign.stream, after=head.seq - 1, limit=1)
        return last if last.type == EventType.CAMPAIGN_COMPLETED else None

    async def create(self, org_id: int, name: str, assistant_id: int | None) -> Campaign:
        assistant = await self._storage.get_assistant(org_id, assistant_id)
        if assistant is None:
            raise InvalidRequest(f"Assistant {assistant_id} not found")
        return await self._storage.create_campaign(org_id, assistant.id, name)

    async def add_contacts(
        self, campaign: Campaign, contacts: list[tuple[str, str | None]]
    ) -> list[Contact]:
        added = await self._storage.add_contacts(campaign.id, contacts)
        self.changed(campaign)
        return added

    async def start(self, campaign: Campaign) -> Campaign:
        started = await self._storage.start_campaign(campaign.id)
        self.changed(started)
        return started

    async def record_outcome(
        self,
        campaign: Campaign,
        contact_id: int,
        outcome: str,
        duration: float | None,
        call_sid: str | None,
        error: str | None,
    ) -> Contact:
        contact, events = await self._storage.record_outcome(
            campaign.id, contact_id, outcome, duration, call_sid, error
        )
        await self.published(campaign, events)
        return contact

    async def published(self, campaign: Campaign, events: list[StoredEvent]) -> None:
        """Publish a campaign's new events and schedule the progress that follows them."""
        await self._publisher.publish(campaign.org_id, events, campaign_meta(campaign))
        if events and events[-1].closes:
            self._forget(campaign.id)  # completed: its last progress went out with it
        elif events:
            self.changed(campaign)

    def _forget(self, campaign_id: int) -> None:
        _, handle = self._scheduled.pop(campaign_id, (None, None))
        if handle is not None:
            handle.cancel()

    def changed(self, campaign: Campaign) -> None:
        """A contact changed: a progress event follows, at most one per interval
        (across the cluster)."""
        if campaign.id in self._retrying:
            return
        if self._interval <= 0 or self._closing.is_set():
            self._spawn(self._append_progress(campaign))
            return
        if campaign.id in self._scheduled:
            return
        self._scheduled[campaign.id] = (campaign, None)
        self._spawn(self._turn(campaign))

    async def _turn(self, campaign: Campaign) -> None:
        """Append progress if the campaign's turn is ours, else try when it ends."""
        key = f"campaign-progress:{campaign.id}"
        try:
            wait = await self._cluster.coalesce(key, self._interval)
        except Exception:
            log.exception("could not coalesce progress of campaign %d", campaign.id)
            self._scheduled.pop(campaign.id, None)
            return
        if campaign.id not in self._scheduled:
            return  # completed, or taken over by ``close``
        if wait > 0:
            handle = asyncio.get_running_loop().call_later(wait, self._next_turn, campaign)
            self._scheduled[campaign.id] = (campaign, handle)
            return
        del self._scheduled[campaign.id]
        await self._append_progress(campaign)

    def _next_turn(self, campaign: Campaign) -> None:
        self._scheduled[campaign.id] = (campaign, None)
        self._spawn(self._turn(campaign))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _append_progress(self, campaign: Campaign) -> None:
        """Append and publish the campaign's progress, trying again (a bounded number
        of times) when storage refuses; while closing, one more attempt at once."""
        delays = iter(PROGRESS_RETRY_DELAYS)
        while True:
            try:
                event = await self._storage.append_progress(campaign.id)
                break
            except Exception as exc:
                delay = None if self._closing.is_set() else next(delays, None)
                if campaign.id in self._scheduled or campaign.id in self._retrying:
                    return  # progress to come anyway, counted after this attempt
                if delay is None:
                    log.exception("gave up appending progress of campaign %d", campaign.id)
                    return
                log.warning(
                    "could not append progress of campaign %d (%s); trying again in %.1f s",
                    campaign.id,
                    type(exc).__name__,
                    delay,
                )
                await self._back_off(campaign.id, delay)
        if event is None:  # the campaign has completed
            self._forget(campaign.id)
            return
        await self._publisher.publish(campaign.org_id, [event], campaign_meta(campaign))

    async def _back_off(self, campaign_id: int, delay: float) -> None:
        """Wait ``delay`` seconds before a new attempt, or less if the service closes."""
        self._retrying.add(campaign_id)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()
        finally:
            self._retrying.discard(campaign_id)

    async def close(self) -> None:
        """Append the progress still to come at once, without waiting for the turn
        (no other node knows of it), and finish what is being written; an append
        waiting to be tried again is tried once more, now."""
        self._closing.set()
        scheduled, self._scheduled = self._scheduled, {}
        for campaign, handle in scheduled.values():
            if handle is not None:
                handle.cancel()
            self._spawn(self._append_progress(campaign))
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)
