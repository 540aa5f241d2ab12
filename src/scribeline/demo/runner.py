"""``scribeline demo``: a demo organization, a fresh key and simulated live calls.

The simulated calls go through the same calls service as REST ingest, so what
a subscriber sees is exactly what a real voice platform would produce.
"""

from __future__ import annotations

import random
import shlex
import sys

from scribeline.auth import new_api_key
from scribeline.domain import Call, Organization
from scribeline.errors import Conflict
from scribeline.ingest.calls import CallService
from scribeline.ingest.models import CreateCall, Transcript
from scribeline.server import Running
from scribeline.storage import Storage

__all__ = ["DEMO_ORG", "ServiceSink", "start_demo"]

DEMO_ORG = "demo"


class ServiceSink:
    """The simulator's ``CallSink`` over the calls service of one organization."""

    def __init__(self, calls: CallService, org_id: int) -> None:
        self._calls = calls
        self._org_id = org_id
        self._open: dict[str, Call] = {}

    async def create_call(
        self, call_sid: str, *, to_phone_number: str, customer_phone_number: str, call_type: str
    ) -> None:
        body = CreateCall.model_validate(
            {
                "call_sid": call_sid,
                "to_phone_number": to_phone_number,
                "customer_phone_number": customer_phone_number,
                "call_type": call_type,
            }
        )
        self._open[call_sid] = await self._calls.create(self._org_id, body)

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
        call = self._open.pop(call_sid) if status != "in-progress" else self._open[call_sid]
        await self._calls.set_status(call, status, {})


async def _demo_org(storage: Storage) -> Organization:
    try:
        return await storage.create_org(DEMO_ORG)
    except Conflict:
        org = await storage.get_org(DEMO_ORG)
        assert org is not None
        return org


async def start_demo(running: Running) -> None:
    """Create the demo key, print how to watch a call, run calls until stopping."""
    from scribeline.demo.simulator import new_call_sid, run_simulation

    services = running.services
    org = await _demo_org(services.storage)
    key, prefix, digest = new_api_key()
    await services.storage.add_api_key(org.id, prefix, digest, frozenset({"read"}), "demo")
    rng = random.Random()
    pinned = new_call_sid(rng)
    ws_base = running.base_url.replace("http://", "ws://", 1)
    watch = f"{ws_base}/live-transcript/{pinned}?token={key}"
    print(
        "\nDemo organization 'demo' with simulated live calls.\n"
        f"  Read-only demo key: {key}\n"
        f"  Health:             {running.base_url}/readyz\n"
        f"  Watch a live call (paste into another terminal):\n"
        f"    {shlex.quote(sys.executable)} -m websockets {shlex.quote(watch)}\n",
        flush=True,
    )
    await run_simulation(
        ServiceSink(services.calls, org.id),
        concurrent_calls=3,
        pinned_call_sid=pinned,
        rng=rng,
        stop=running.stopping,
    )
