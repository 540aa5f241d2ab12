"""The simulator's ``CallSink`` over the calls service (the demo's way in)."""

from __future__ import annotations

import asyncio

from scribeline.domain import Call
from scribeline.events import TERMINAL_STATUSES
from scribeline.ingest.calls import CallService
from scribeline.ingest.models import CreateCall, Transcript

__all__ = ["ServiceSink"]


class ServiceSink:
    """The simulator's ``CallSink`` over the calls service of one organization."""

    def __init__(self, calls: CallService, org_id: int) -> None:
        self._calls = calls
        self._org_id = org_id
        self._open: dict[str, Call] = {}
        #: Calls that are placed to a campaign contact: SID -> contact id.
        self.contacts: dict[str, int] = {}
        self._waiters: dict[str, asyncio.Future[None]] = {}

    def created(self, call_sid: str) -> asyncio.Future[None]:
        """Resolves once the call ``call_sid`` has been created (ask before it is)."""
        return self._waiters.setdefault(call_sid, asyncio.get_running_loop().create_future())

    async def create_call(
        self,
        call_sid: str,
        *,
        status: str,
        to_phone_number: str,
        customer_phone_number: str,
        call_type: str,
    ) -> None:
        body = CreateCall.model_validate(
            {
                "call_sid": call_sid,
                "status": status,
                "to_phone_number": to_phone_number,
                "customer_phone_number": customer_phone_number,
                "call_type": call_type,
                "campaign_contact_id": self.contacts.pop(call_sid, None),
            }
        )
        self._open[call_sid] = await self._calls.create(self._org_id, body)
        waiter = self._waiters.pop(call_sid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def append_transcript(
        self,
        call_sid: str,
        *,
        content: str,
        speaker: str,
        is_final: bool,
        confidence: float | None,
        segment_start: float,
        segment_end: float,
        segment_id: str,
    ) -> int:
        item = Transcript.model_validate(
            {
                "content": content,
                "speaker": speaker,
                "is_final": is_final,
                "confidence": confidence,
                "segment_start": segment_start,
                "segment_end": segment_end,
                "segment_id": segment_id,
            }
        )
        (event,) = await self._calls.append_transcripts(self._open[call_sid], [item])
        return event.seq

    async def set_status(self, call_sid: str, status: str) -> None:
        ended = status in TERMINAL_STATUSES
        call = self._open.pop(call_sid) if ended else self._open[call_sid]
        await self._calls.set_status(call, status, {})
