"""The calls service: create calls and append their events, then publish them.

Every event is durable (``Storage.append`` returned) before it is published,
and the broker only ever carries stored events with their seq.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scribeline.broker import Broker, pack
from scribeline.domain import Call
from scribeline.errors import CallEnded, InvalidRequest, NotFound, StreamClosed
from scribeline.events import (
    TERMINAL_STATUSES,
    EventType,
    NewEvent,
    StoredEvent,
    format_ms,
    now_ms,
)
from scribeline.ingest.models import CreateCall, Transcript
from scribeline.storage import Storage

__all__ = ["CallService"]


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


def _transcript_event(item: Transcript, ts: int) -> NewEvent:
    return NewEvent(EventType.TRANSCRIPT, item.model_dump(), ts=ts)


class CallService:
    """Call lifecycle and transcript ingest for one organization at a time."""

    def __init__(self, storage: Storage, broker: Broker) -> None:
        self._storage = storage
        self._broker = broker

    async def get(self, org_id: int, call_sid: str) -> Call:
        call = await self._storage.get_call(org_id, call_sid)
        if call is None:
            raise NotFound(f"Call {call_sid} not found")
        return call

    async def create(self, org_id: int, body: CreateCall) -> Call:
        assistant = await self._storage.get_assistant(org_id, body.assistant_id)
        if assistant is None:
            raise InvalidRequest(f"Assistant {body.assistant_id} not found")
        ts = now_ms()
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
        )
        call, event = await self._storage.create_call(
            draft, _status_event(draft, body.status, {}, ts)
        )
        await self._publish([event])
        return call

    async def append_transcripts(
        self, call: Call, items: Sequence[Transcript]
    ) -> list[StoredEvent]:
        """Append a batch in one transaction (all or nothing)."""
        ts = now_ms()
        return await self._append(call, [_transcript_event(item, ts) for item in items])

    async def set_status(self, call: Call, status: str, metadata: dict[str, Any]) -> StoredEvent:
        (event,) = await self._append(call, [_status_event(call, status, metadata, now_ms())])
        return event

    async def _append(self, call: Call, events: list[NewEvent]) -> list[StoredEvent]:
        # No await before the append itself: appends queued in call order get seqs in that order.
        try:
            stored = await self._storage.append(call.stream, events)
        except StreamClosed:
            raise CallEnded(f"Call {call.call_sid} has ended") from None
        await self._publish(stored)
        return stored

    async def _publish(self, events: list[StoredEvent]) -> None:
        for event in events:
            await self._broker.publish(event.stream, pack(event))
