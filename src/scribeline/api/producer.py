"""``GET /v1/ingest/{call_sid}``: the producer WebSocket.

Each text message is a transcript, a batch (array) or ``{"type":"status"}``,
acknowledged in order with its seq. Appends are pipelined: the socket keeps
being read while earlier appends wait for their group commit, up to
``producer_max_in_flight`` unacknowledged messages (then reading pauses,
which is the producer's backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from scribeline.api.state import SERVICES
from scribeline.api.websocket import authorize_call, open_websocket, report
from scribeline.auth import extract_credentials
from scribeline.connection import Connection
from scribeline.domain import Call
from scribeline.errors import (
    CloseCode,
    InvalidMessage,
    ScribelineError,
)
from scribeline.events import StoredEvent
from scribeline.ingest.calls import CallService
from scribeline.ingest.models import SetStatus, Transcript, TranscriptBatch
from scribeline.protocols.common import decode_json

__all__ = ["producer"]

_Pending = tuple[Any, "asyncio.Future[list[StoredEvent]]", bool]


def _error(error: ScribelineError, ref: Any = None) -> bytes:
    body: dict[str, Any] = {"type": "error", **error.to_dict()}
    if ref is not None:
        body["ref"] = ref
    return orjson.dumps(body)


def _parse(calls: CallService, call: Call, text: str, max_batch: int) -> _Pending:
    """Validate one message and start its append; returns (ref, task, is_batch)."""
    message = decode_json(text)
    loop = asyncio.get_running_loop()
    try:
        if isinstance(message, list):
            if len(message) > max_batch:
                raise InvalidMessage(f"A batch holds at most {max_batch} transcripts")
            items = TranscriptBatch.validate_python(message)
            return None, loop.create_task(calls.append_transcripts(call, items)), True
        if not isinstance(message, dict):
            raise InvalidMessage("Expected a JSON object or array")
        ref = message.pop("ref", None)
        kind = message.pop("type", "transcript")
        if kind == "status":
            status = SetStatus.model_validate(message)
            coro = calls.set_status(call, status.status, status.metadata)
            return ref, loop.create_task(_one(coro)), False
        if kind != "transcript":
            raise InvalidMessage("type must be 'transcript' or 'status'")
        item = Transcript.model_validate(message)
        return ref, loop.create_task(calls.append_transcripts(call, [item])), False
    except ValidationError as exc:
        raise InvalidMessage(_describe(exc)) from None


async def _one(coro: Coroutine[Any, Any, StoredEvent]) -> list[StoredEvent]:
    return [await coro]


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    return f"{where}: {first['msg']}"


async def producer(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    call_sid = request.match_info["call_sid"]
    credentials = extract_credentials(request)
    conn = await open_websocket(
        request, services, credentials, services.settings.producer_messages_per_second, pace=True
    )
    acks: asyncio.Queue[_Pending | None] = asyncio.Queue(services.settings.producer_max_in_flight)
    try:
        _, call = await authorize_call(services, call_sid, credentials.token, "write")
    except Exception as exc:
        await report(conn, exc, _error, refusal=True)
        await conn.close(CloseCode.NORMAL)
        return conn.ws
    acker = asyncio.get_running_loop().create_task(_acknowledge(conn, acks))
    try:
        while (message := await conn.next_message()) is not None:
            try:
                pending = _parse(
                    services.calls, call, message.text(), services.settings.max_batch_items
                )
            except InvalidMessage as exc:
                # In order with the acks of earlier messages.
                failed: asyncio.Future[list[StoredEvent]] = (
                    asyncio.get_running_loop().create_future()
                )
                failed.set_exception(exc)
                await acks.put((None, failed, False))
                continue
            await acks.put(pending)
        await acks.put(None)
        await acker
    except Exception as exc:
        await report(conn, exc, _error)
    finally:
        if not acker.done():
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker
        await conn.close(CloseCode.NORMAL)
    return conn.ws


async def _acknowledge(conn: Connection, acks: asyncio.Queue[_Pending | None]) -> None:
    """Send each message's ack (or error) in the order the messages came."""
    while (item := await acks.get()) is not None:
        ref, task, is_batch = item
        try:
            stored = await task
        except ScribelineError as exc:
            conn.send(_error(exc, ref))
            continue
        ack: dict[str, Any] = {"type": "ack"}
        if is_batch:
            ack["seqs"] = [e.seq for e in stored]
        else:
            ack["seq"] = stored[0].seq
        if ref is not None:
            ack["ref"] = ref
        conn.send(orjson.dumps(ack))
