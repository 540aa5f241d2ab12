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
import logging
from collections.abc import Coroutine
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from scribeline.api.state import SERVICES
from scribeline.api.websocket import Endpoint, authorize_call, serve_websocket
from scribeline.auth import Credentials
from scribeline.connection import Connection, Inbound
from scribeline.domain import Call
from scribeline.errors import InternalError, InvalidMessage, ScribelineError, error_message
from scribeline.events import StoredEvent
from scribeline.ingest.calls import CallService
from scribeline.ingest.models import SetStatus, Transcript, TranscriptBatch, parse_ref
from scribeline.ingest.ordering import Baton, Turn
from scribeline.protocols.common import decode_json, describe_problem

__all__ = ["producer"]

log = logging.getLogger(__name__)

#: (the message's ref, its append, whether it is a batch)
_Pending = tuple[Any, "asyncio.Future[list[StoredEvent]]", bool]


def _parse(
    calls: CallService, call: Call, inbound: Inbound, max_batch: int, baton: Baton
) -> _Pending:
    """Validate one message and start its append: ``(ref, append, is_batch)``.

    A refused message gets an already failed append, so that its error keeps
    its place among the acks, with its ``ref`` when the ref itself is valid.
    Appends take their turn from ``baton`` here, in message order, so they
    reach storage in that order whatever their checks wait for.
    """
    loop = asyncio.get_running_loop()
    ref: Any = None
    try:
        message = decode_json(inbound.text())
        if isinstance(message, list):
            if len(message) > max_batch:
                raise InvalidMessage(f"A batch holds at most {max_batch} transcripts")
            items = TranscriptBatch.validate_python(message)
            turn = baton.next()
            return None, _start(calls.append_transcripts(call, items, turn), turn), True
        if not isinstance(message, dict):
            raise InvalidMessage("Expected a JSON object or array")
        ref = parse_ref(message.pop("ref", None))
        kind = message.pop("type", "transcript")
        if kind == "status":
            status = SetStatus.model_validate(message)
            turn = baton.next()
            coro = calls.set_status(call, status.status, status.metadata, turn)
            return ref, _start(_one(coro), turn), False
        if kind != "transcript":
            raise InvalidMessage("type must be 'transcript' or 'status'")
        item = Transcript.model_validate(message)
        turn = baton.next()
        return ref, _start(calls.append_transcripts(call, [item], turn), turn), False
    except ValidationError as exc:
        error = InvalidMessage(describe_problem(exc.errors()))
    except InvalidMessage as exc:
        error = exc
    failed: asyncio.Future[list[StoredEvent]] = loop.create_future()
    failed.set_exception(error)
    return ref, failed, False


def _start(
    append: Coroutine[Any, Any, list[StoredEvent]], turn: Turn
) -> asyncio.Task[list[StoredEvent]]:
    task = asyncio.get_running_loop().create_task(append)
    # Whatever happens to the task (even a cancellation before it ran), the next
    # message's append must not wait for this one forever.
    task.add_done_callback(lambda _: turn.release())
    return task


async def _one(coro: Coroutine[Any, Any, StoredEvent]) -> list[StoredEvent]:
    return [await coro]


async def producer(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    s = services.settings
    call_sid = request.match_info["call_sid"]

    async def join(conn: Connection, credentials: Credentials) -> Call:
        _, call = await authorize_call(services, conn, call_sid, credentials.token, "write")
        return call

    async def serve(conn: Connection, call: Call) -> None:
        acks: asyncio.Queue[_Pending | None] = asyncio.Queue(s.producer_max_in_flight)
        baton = Baton()
        acker = asyncio.get_running_loop().create_task(_acknowledge(conn, acks))
        try:
            while (message := await conn.next_message()) is not None:
                pending = _parse(services.calls, call, message, s.max_batch_items, baton)
                await acks.put(pending)
        finally:
            # Whatever ends the connection, the messages read before it are answered
            # first (their appends complete in any case: see _acknowledge).
            await _finish(acks, acker, within=s.close_timeout)

    return await serve_websocket(
        request,
        Endpoint(join, serve, error_message, acknowledges=True),
        s.producer_messages_per_second,
        pace=True,
    )


async def _finish(
    acks: asyncio.Queue[_Pending | None], acker: asyncio.Task[None], *, within: float
) -> None:
    """Let the acknowledger answer what is queued, for at most ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            await acks.put(None)  # waits while the queue is full: the acker is draining it
            await acker
    except TimeoutError:
        acker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acker


async def _acknowledge(conn: Connection, acks: asyncio.Queue[_Pending | None]) -> None:
    """Send each message's ack (or error) in the order the messages came."""
    while (item := await acks.get()) is not None:
        ref, task, is_batch = item
        # Nothing may end this loop but the end of the queue: a producer waits for
        # an answer to every message, and one left unanswered is sent again.
        try:
            # Shielded: if this loop is cancelled, an append still completes, stored
            # and published, rather than stored and never published.
            stored = await asyncio.shield(task)
            conn.send(_ack(stored, ref, is_batch))
        except ScribelineError as exc:
            conn.send(error_message(exc, ref))
        except Exception:
            log.exception("an append from a producer WebSocket failed")
            conn.send(error_message(InternalError(), ref))


def _ack(stored: list[StoredEvent], ref: Any, is_batch: bool) -> bytes:
    ack: dict[str, Any] = {"type": "ack"}
    if is_batch:
        ack["seqs"] = [e.seq for e in stored]
    else:
        ack["seq"] = stored[0].seq
    if ref is not None:
        ack["ref"] = ref
    return orjson.dumps(ack)
