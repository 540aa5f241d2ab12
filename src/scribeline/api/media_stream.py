"""``GET /v1/media-stream[/{token}]``: Twilio Media Streams in, transcripts out.

The socket speaks Twilio's protocol exactly (``speech/twilio.py``) and sends
nothing back: refusals are close frames whose reason says what was wrong
(``code: message``). Credentials are checked in the order of
``speech/access.py``; ``media`` before ``start`` is not processed. An abrupt
close is a ``stop``: both tracks are flushed either way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web
from pydantic import ValidationError

from scribeline.api.state import SERVICES, Services
from scribeline.api.websocket import Endpoint, serve_websocket
from scribeline.auth import Credentials, websocket_credentials
from scribeline.connection import Connection
from scribeline.errors import InvalidMessage, RequestTimeout
from scribeline.protocols.common import decode_object
from scribeline.speech.access import Admission
from scribeline.speech.streams import MediaStream, parse_start
from scribeline.speech.twilio import Media, Start, decode_payload, signed_url

__all__ = ["media_stream"]

log = logging.getLogger(__name__)

#: Events a listener takes note of and otherwise ignores (``mark`` echoes only on
#: bidirectional streams; ``dtmf`` is not transcribed).
_IGNORED = frozenset({"connected", "dtmf", "mark"})


@dataclass(slots=True)
class _Stream:
    admission: Admission
    stream: MediaStream | None = None


async def media_stream(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    s = services.settings
    token = request.match_info.get("token") or websocket_credentials(request).token
    url = signed_url(s.public_url, request.host, request.rel_url.raw_path)
    # What the upgrade carries is checked before it is accepted (an HTTP refusal).
    admission = await services.media.access.at_upgrade(
        token, url, request.headers.get("X-Twilio-Signature")
    )

    async def join(conn: Connection, credentials: Credentials) -> _Stream:
        return _Stream(admission)

    async def serve(conn: Connection, state: _Stream) -> None:
        try:
            async with asyncio.timeout(s.media_start_timeout):
                start = await _until_start(conn)
        except TimeoutError:
            raise RequestTimeout(
                f"No start message within {s.media_start_timeout:g} s of connecting"
            ) from None
        if start is None:
            return
        state.stream = await _begin(services, state.admission, start)
        await _transcribe(conn, state.stream)

    async def leave(conn: Connection, state: _Stream) -> None:
        if state.stream is not None:
            # Shielded: a stop or a cut socket still gets its last finals stored.
            await asyncio.shield(_end(state.stream, s.media_finish_timeout))

    return await serve_websocket(
        request,
        Endpoint(join, serve, None, leave, explain=True),
        s.media_messages_per_second,
        pace=True,
    )


async def _until_start(conn: Connection) -> Start | None:
    """Read up to ``start`` (``connected`` and early ``media`` are passed over)."""
    while (inbound := await conn.next_message()) is not None:
        message = decode_object(inbound.text())
        event = message.get("event")
        if event == "start":
            try:
                return Start.model_validate(message.get("start"))
            except ValidationError as exc:
                raise InvalidMessage(f"start: {_describe(exc)}") from None
        if event == "stop":
            return None
    return None


async def _begin(services: Services, admission: Admission, start: Start) -> MediaStream:
    request = parse_start(start)
    org = await services.media.access.at_start(
        admission, start.custom_parameters.get("token"), request.call.call_sid
    )
    return await services.media.streams.begin(org, request)


async def _transcribe(conn: Connection, stream: MediaStream) -> None:
    """Feed ``media`` to the tracks until ``stop``, the socket's end or the call's."""
    while (inbound := await conn.next_message()) is not None:
        message = decode_object(inbound.text())
        event = message.get("event")
        if event == "media":
            try:
                media = Media.model_validate(message.get("media"))
                audio = decode_payload(media.payload)
            except (ValidationError, ValueError) as exc:
                detail = _describe(exc) if isinstance(exc, ValidationError) else str(exc)
                raise InvalidMessage(f"media: {detail}") from None
            stream.feed(media.track, media.timestamp, audio)
            await stream.ready()  # a sender faster than real time waits for the engine
        elif event == "stop":
            return
        elif event == "start":
            raise InvalidMessage("A stream sends start once")
        elif event not in _IGNORED:
            log.debug("%s: ignored an unknown event %r", stream.label, event)
        if stream.stopped is not None:
            raise stream.stopped


async def _end(stream: MediaStream, within: float) -> None:
    await stream.finish(within)
    log.info("%s ended: %d finals, %d partials", stream.label, stream.finals, stream.partials)


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    return f"{where}: {first['msg']}"
