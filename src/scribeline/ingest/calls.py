"""The calls service: create calls and append their events, then publish them.

Every event is durable (storage returned) before it is published, and the
broker only ever carries stored events with their seq. Appends are queued to
storage before any other await, so appends made in order get seqs in order.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from scribeline import history
from scribeline.cluster import Signals
from scribeline.connection import Connection
from scribeline.domain import Call, CallPage
from scribeline.errors import (
    CallEnded,
    InvalidRequest,
    NotFound,
    StreamClosed,
    TranscriptionDisabled,
)
from scribeline.events import (
    TERMINAL_STATUSES,
    CallStatus,
    EventType,
    NewEvent,
    StoredEvent,
    format_ms,
    now_ms,
)
from scribeline.ingest.campaigns import CampaignService
from scribeline.ingest.models import CreateCall, Transcript, valid_call_sid
from scribeline.ingest.ordering import Turn
from scribeline.ingest.publish import Publisher
from scribeline.redaction import redact
from scribeline.storage import Storage
from scribeline.ttl_cache import TtlCache

__all__ = ["ASSISTANT_CHANGED", "CALL_DELETED", "CallService", "CallSnapshot", "call_meta"]

log = logging.getLogger(__name__)

#: The cluster notice that an assistant's transcription switch changed.
ASSISTANT_CHANGED = "assistant.changed"
#: The cluster notice that a call was deleted: every node forgets its cached copy
#: and closes the connections that follow its stream.
CALL_DELETED = "call.deleted"


def _status_event(call: Call, status: str, extra: dict[str, Any], ts: int) -> NewEvent:
    metadata = {**extra, **call.metadata()}
    if status in TERMINAL_STATUSES:
        metadata["ended_at"] = format_ms(ts)
    return NewEvent(
        EventType.CALL_STATUS,
        {"status": status, "metadata": metadata},
        closes=status in TERMINAL_STATUSES,
        ts=ts,
    )


def _transcript_event(item: Transcript, ts: int, redacted: frozenset[str]) -> NewEvent:
    data = item.model_dump()
    if redacted:
        data["content"] = redact(item.content, redacted).text
    return NewEvent(EventType.TRANSCRIPT, data, ts=ts)


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    """A call as of its stream's seq ``last_seq``: its status then, and its newest
    transcript event up to it (final or partial; None before the first)."""

    call: Call
    last_seq: int
    latest: StoredEvent | None
    #: The call's alerts up to ``last_seq``: how many, and the newest (None: none).
    alerts: tuple[int, StoredEvent] | None = None


def call_meta(call: Call) -> dict[str, Any]:
    """What the organization event stream filters call events on."""
    return {"call_sid": call.call_sid, "assistant_id": call.assistant_id}


class CallService:
    """Call lifecycle and transcript ingest for one organization at a time."""

    def __init__(
        self,
        storage: Storage,
        publisher: Publisher,
        campaigns: CampaignService,
        signals: Signals,
        switch_cache_seconds: float = 1.0,
        known_calls_seconds: float = 60.0,
        on_deleted: Callable[[str], object] | None = None,
        on_stored: Callable[[Call, list[StoredEvent]], Awaitable[object]] | None = None,
        redaction: Callable[[int, int], Awaitable[frozenset[str]]] | None = None,
    ) -> None:
        self._storage = storage
        self._publisher = publisher
        self._campaigns = campaigns
        self._signals = signals
        # assistant id -> (valid until, transcription enabled)
        self._switches: TtlCache[int, bool] = TtlCache(switch_cache_seconds, 10_000)
        # (org id, call SID) -> a call known to exist, for appends (see ``for_append``).
        self._known: TtlCache[tuple[int, str], Call] = TtlCache(known_calls_seconds, 10_000)
        # Called with a deleted call's stream on every node (``Hub.close_stream``).
        self._on_deleted = on_deleted
        # Awaited with each stored and published batch of transcripts (alerts).
        self._on_stored = on_stored
        # (org id, assistant id) -> the PII kinds its transcripts are stored without.
        self._redaction = redaction
        signals.on(ASSISTANT_CHANGED, self._drop_switch)
        signals.on(CALL_DELETED, self._forget_call)

    async def forget_assistant(self, assistant_id: int) -> None:
        """An assistant's settings changed: every node stops using its cached switch
        (this one before this returns; the others when the notice reaches them, or
        when their cache entry expires if it never does)."""
        await self._signals.broadcast(ASSISTANT_CHANGED, {"id": assistant_id})

    def _drop_switch(self, notice: dict[str, Any]) -> None:
        self._switches.drop(notice["id"])

    async def _transcription_enabled(self, call: Call) -> bool:
        """The assistant's switch, cached briefly: it is read on every append."""
        now = time.monotonic()
        cached = self._switches.get(call.assistant_id, now)
        if cached is not None:
            return cached
        assistant = await self._storage.get_assistant(call.org_id, call.assistant_id)
        enabled = assistant is None or assistant.transcription_enabled
        self._switches.put(call.assistant_id, enabled, now)
        return enabled

    async def get(self, org_id: int, call_sid: str) -> Call:
        # A SID that no call can have (NUL, which PostgreSQL refuses) is not looked up.
        call = await self._storage.get_call(org_id, call_sid) if valid_call_sid(call_sid) else None
        if call is None:
            raise NotFound(f"Call {call_sid} not found")
        return call

    async def for_append(self, org_id: int, call_sid: str) -> Call:
        """The call, to append to: from a cache of calls known to exist, read on
        every REST append. What an append uses of a call (its id, hence its
        stream, its organization and assistant) never changes, so a cached call
        is right on every node, and only found calls are cached (one created
        since, here or on another node, is read from storage). Its ``status``
        may be stale: storage refuses appends to an ended call's stream
        whatever the caller thinks, and a deleted call's stream stays closed (a
        tombstone), so a copy cached before a deletion that this node has not
        heard of yet (:meth:`delete`) is refused as ended, never resurrected."""
        key = (org_id, call_sid)
        now = time.monotonic()
        call = self._known.get(key, now)
        if call is None:
            call = await self.get(org_id, call_sid)
            self._known.put(key, call, now)
        return call

    async def delete(self, org_id: int, call_sid: str, key_id: int) -> None:
        """Delete a call with its events and every per-call row (audited with ids,
        never content). A call not yet ended is ended first, as ``canceled``
        with ``{"reason": "deleted"}`` (its subscribers see it end, a linked
        campaign contact completes); then every node forgets it and closes the
        connections that follow it."""
        call = await self.get(org_id, call_sid)
        if call.status not in TERMINAL_STATUSES:
            with contextlib.suppress(CallEnded):  # ended meanwhile: nothing to do
                await self.set_status(call, CallStatus.CANCELED, {"reason": "deleted"})
        events = await self._storage.delete_call(org_id, call.id)
        if events is None:  # deleted meanwhile, by another request
            raise NotFound(f"Call {call_sid} not found")
        log.info(
            "call deleted: org=%d call_id=%d key_id=%d events=%d", org_id, call.id, key_id, events
        )
        notice = {"org": org_id, "sid": call_sid, "stream": call.stream}
        await self._signals.broadcast(CALL_DELETED, notice)

    def _forget_call(self, notice: dict[str, Any]) -> None:
        self._known.drop((notice["org"], notice["sid"]))
        if self._on_deleted is not None:
            self._on_deleted(notice["stream"])

    async def list_calls(
        self, org_id: int, statuses: Collection[str] | None, limit: int, cursor: str | None
    ) -> CallPage:
        """The organization's calls (of any of ``statuses`` if given), newest first;
        ``cursor`` continues a page."""
        return await self._storage.list_calls(org_id, statuses, limit, cursor)

    async def snapshots(
        self, org_id: int, statuses: Collection[str] | None, limit: int, cursor: str | None
    ) -> tuple[list[CallSnapshot], str | None]:
        """A page of :meth:`list_calls`, each call as of its stream's head, and the
        next page's cursor: three queries whatever the number of calls or the length
        of their streams (the rows with their heads, then the newest line of each
        up to its head, an index scan back from it, then its alerts' count)."""
        page, heads = await self._storage.list_calls_at_heads(org_id, statuses, limit, cursor)
        lines = await self._storage.latest_of_type(heads, EventType.TRANSCRIPT)
        alerts = await self._storage.alert_counts(heads)
        snapshots = [
            CallSnapshot(c, heads[c.stream], lines.get(c.stream), alerts.get(c.stream))
            for c in page.calls
        ]
        return snapshots, page.next_cursor

    async def transcript(
        self, call: Call, after: int, limit: int, max_bytes: int
    ) -> history.FinalsPage:
        """One page of the call's final transcript after seq ``after`` (see
        ``history.finals_page``), up to the stream's head as of now."""
        head = await self._storage.head(call.stream)
        return await history.finals_page(
            self._storage, call.stream, after, head.seq, limit, max_bytes
        )

    async def opening_metadata(self, call: Call) -> dict[str, Any]:
        """The metadata of the call's first status event (what created it)."""
        first = await self._storage.read(call.stream, 0, 1)
        if not first or first[0].type != EventType.CALL_STATUS:
            return {}
        metadata = first[0].data.get("metadata")
        return metadata if isinstance(metadata, dict) else {}

    async def replay(
        self,
        conn: Connection,
        call: Call,
        after: int,
        upto: int,
        render: Callable[[StoredEvent], bytes],
    ) -> tuple[int, bool]:
        """Send the call's history ``(after, upto]`` to a joining ``conn`` (see
        ``history.replay``): the last seq covered and whether the call ended."""
        return await history.replay(self._storage, conn, call.stream, after, upto, render)

    async def create(
        self,
        org_id: int,
        body: CreateCall,
        *,
        started_at: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Call:
        """Create a call; ``started_at`` (ms) when it began before this request (a
        media stream's start), ``metadata`` on its first status event."""
        assistant = await self._storage.get_assistant(org_id, body.assistant_id)
        if assistant is None:
            raise InvalidRequest(f"Assistant {body.assistant_id} not found")
        ts = now_ms() if started_at is None else started_at
        draft = Call(
            id=0,
            org_id=org_id,
            assistant_id=assistant.id,
            call_sid=body.call_sid,
            status=body.status,
            to_phone_number=body.to_phone_number,
            customer_phone_number=body.customer_phone_number,
            call_type=body.call_type,
            started_at=ts,
            ended_at=None,
            campaign_contact_id=body.campaign_contact_id,
        )
        initial = _status_event(draft, body.status, metadata or {}, ts)
        call, stored = await self._storage.create_call(draft, initial)
        # The call's first event, then the contact_update of a linked contact,
        # which goes through the campaign service (it schedules the progress).
        (first, *campaign_events) = stored
        await self._publisher.publish(org_id, [first], call_meta(call))
        if call.campaign_id is not None and campaign_events:
            campaign = await self._campaigns.get(org_id, call.campaign_id)
            await self._campaigns.published(campaign, campaign_events)
        return call

    async def append_transcripts(
        self, call: Call, items: Sequence[Transcript], turn: Turn | None = None
    ) -> list[StoredEvent]:
        """Append a batch in one transaction (all or nothing); with a ``turn``, the
        append reaches storage after every earlier turn's (a producer's order)."""
        try:
            if not await self._transcription_enabled(call):
                raise TranscriptionDisabled(
                    f"Transcription is switched off for assistant {call.assistant_id}"
                )
            redacted: frozenset[str] = (
                frozenset()
                if self._redaction is None
                else await self._redaction(call.org_id, call.assistant_id)
            )
            ts = now_ms()
            # Redacted before the append: what is stored, published and sent on
            # never held the text's PII (partials too).
            events = [_transcript_event(item, ts, redacted) for item in items]
            append = self._storage.append(call.stream, events)
            stored = await (turn.hand_over(append) if turn is not None else append)
        except StreamClosed:
            raise CallEnded(f"Call {call.call_sid} has ended") from None
        finally:
            if turn is not None:
                turn.release()
        await self._publisher.publish(call.org_id, stored, call_meta(call))
        if self._on_stored is not None:
            await self._on_stored(call, stored)  # after the publish: captions never wait
        return stored

    async def set_status(
        self, call: Call, status: str, metadata: dict[str, Any], turn: Turn | None = None
    ) -> StoredEvent:
        """Store a status change; a terminal one may complete a campaign contact too.
        With a ``turn``, as for :meth:`append_transcripts`."""
        event = _status_event(call, status, metadata, now_ms())
        change = self._storage.set_call_status(call, event)
        stored = await (turn.hand_over(change) if turn is not None else change)
        call_events = [e for e in stored if e.stream == call.stream]
        await self._publisher.publish(call.org_id, call_events, call_meta(call))
        if call.campaign_id is not None and len(stored) > len(call_events):
            campaign = await self._campaigns.get(call.org_id, call.campaign_id)
            await self._campaigns.published(campaign, stored[len(call_events) :])
        return call_events[0]
