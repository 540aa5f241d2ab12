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
from scribeline.protocols.common import decode_object, describe_problem
from scribeline.speech.access import Admission
from scribeline.speech.streams import MediaStream, parse_start
from scribeline.speech.twilio import Media, Start, decode_payload, signed_url

__all__ = ["media_stream"]

log = logging.getLogger(__name__)

#: Messages a stream may send before ``start`` (Twilio sends one: ``connected``).
MAX_BEFORE_START = 4

#: Seconds of audio a stream may be ahead of real time before it is paced (jitter).
REAL_TIME_SLACK = 1.0
#: Longest pause between two messages of a paced stream (a closed socket is seen).
MAX_PACING_WAIT = 1.0

#: Events a listener takes note of and otherwise ignores (``mark`` echoes only on
#: bidirectional streams; ``dtmf`` is not transcribed).
_IGNORED = frozenset({"connected", "dtmf", "mark"})


@dataclass(slots=True)
class _Stream:
    admission: Admission
    stream: MediaStream | None = None
    #: Whether the stream ended with ``stop`` (else its socket closed).
    stopped: bool = False


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
        if admission.principal is not None:  # revoking the token's key closes the stream
            conn.authenticated(admission.principal.key_id)
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
        state.stream = await _begin(services, conn, state.admission, start)
        state.stopped = await _transcribe(conn, state.stream, s.media_max_speed)

    async def leave(conn: Connection, state: _Stream) -> None:
        if state.stream is not None:
            reason = "stop" if state.stopped else "connection_closed"
            stream = state.stream
            services.media.streams.end(stream, within=s.media_finish_timeout, reason=reason)
            # The socket closes once the last finals are stored; the rest of the
            # ending (completing the call after a grace) goes on in the media
            # service, which the server waits for before closing storage.
            await stream.finished.wait()

    return await serve_websocket(
        request,
        Endpoint(join, serve, None, leave, explain=True),
        s.media_messages_per_second,
        pace=True,
        hold=services.media.socket(),  # counted until the socket has closed
    )


async def _until_start(conn: Connection) -> Start | None:
    """Read up to ``start``: ``connected`` and a few early messages are passed over
    (unprocessed); a socket that sends more before ``start`` is refused."""
    for _ in range(MAX_BEFORE_START + 1):
        inbound = await conn.next_message()
        if inbound is None:
            return None
        message = decode_object(inbound.text())
        event = message.get("event")
        if event == "start":
            try:
                return Start.model_validate(message.get("start"))
            except ValidationError as exc:
                raise InvalidMessage(f"start: {describe_problem(exc.errors())}") from None
        if event == "stop":
            return None
    raise InvalidMessage(f"Expected start within the first {MAX_BEFORE_START} messages")


async def _begin(
    services: Services, conn: Connection, admission: Admission, start: Start
) -> MediaStream:
    request = parse_start(start)
    org, principal = await services.media.access.at_start(
        admission, start.custom_parameters.get("token"), request.call.call_sid
    )
    if principal is not None:
        conn.authenticated(principal.key_id)
    return await services.media.streams.begin(org, request)


async def _transcribe(conn: Connection, stream: MediaStream, max_speed: float) -> bool:
    """Feed ``media`` to the tracks until ``stop`` (True), the socket's end (False)
    or the call's. A sender ahead of real time (a replay) is held to the engines'
    pace and to ``max_speed`` times real time; Twilio, at real time, never waits."""
    while (inbound := await conn.next_message()) is not None:
        message = decode_object(inbound.text())
        event = message.get("event")
        if event == "media":
            try:
                media = Media.model_validate(message.get("media"))
                audio = decode_payload(media.payload)
            except (ValidationError, ValueError) as exc:
                detail = (
                    describe_problem(exc.errors()) if isinstance(exc, ValidationError) else str(exc)
                )
                raise InvalidMessage(f"media: {detail}") from None
            stream.feed(media.track, media.timestamp, audio)
            # A Twilio stream, at real time, is never ahead of the time since it began.
            if stream.heard() - stream.elapsed() > REAL_TIME_SLACK:
                await stream.ready()
                wait = stream.heard() / max_speed - stream.elapsed()
                if wait > 0:  # pacing to max_speed times real time (a short wait)
                    await asyncio.sleep(min(wait, MAX_PACING_WAIT))
        elif event == "stop":
            return True
        elif event == "start":
            raise InvalidMessage("A stream sends start once")
        elif event not in _IGNORED:
            log.debug("%s: ignored an unknown event %r", stream.label, event)
        if stream.stopped is not None:
            raise stream.stopped
    return False
