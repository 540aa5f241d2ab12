"""Plays a recorded call into a media-stream WebSocket the way Twilio would.

Twilio Media Streams (``<Start><Stream track="both_tracks">``) opens a WebSocket to
the server and sends JSON text frames only: ``connected``, then ``start`` (the ids,
the tracks, ``mediaFormat`` and the TwiML ``<Parameter>`` values as
``customParameters``), then one ``media`` message per 20 ms per track (160 bytes of
8 kHz mu-law, base64) and finally ``stop``, after which it closes the socket. Every
number Twilio sends inside a message is a *string*: ``sequenceNumber`` counts every
message after ``connected`` from "1", ``chunk`` counts each track's media messages
from "1" and ``timestamp`` is milliseconds of audio since the stream started. It
expects nothing back on a unidirectional stream; whatever the server does send is
recorded in :class:`PlayResult`, so a test can assert that nothing came.

The message contents are built by pure functions (:func:`start_message`,
:func:`media_message`, ...); :func:`play_call` is the asyncio glue that paces them
and talks to the socket. ``cut_after`` imitates a call whose stream drops: the
socket is aborted (no ``stop``, no close frame).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from scribeline.demo.recording import FRAME_MS, Recording
from scribeline.speech.twilio import twilio_signature

__all__ = [
    "DEMO_ACCOUNT_SID",
    "PlayResult",
    "connected_message",
    "media_message",
    "new_stream_sid",
    "play_call",
    "start_message",
    "stop_message",
]

#: A fictional account SID for demos and tests.
DEMO_ACCOUNT_SID = "AC" + "5c" * 16

#: The User-Agent Twilio's media-stream WebSockets send on the upgrade request.
_USER_AGENT = "Twilio.TmeWs/1.0"
_FRAME_BYTES = 8000 * FRAME_MS // 1000
_MULAW_SILENCE = b"\xff"
_CLOSE_WAIT = 5.0


@dataclass(slots=True)
class PlayResult:
    """What happened on the socket while a call was played."""

    stream_sid: str
    #: Every message sent, ``connected`` included.
    messages_sent: int = 0
    #: ``media`` messages sent per track.
    media_sent: dict[str, int] = field(default_factory=dict)
    #: Whether ``stop`` was sent (not when cut, not when the server closed first).
    stop_sent: bool = False
    #: Whether the socket was aborted by ``cut_after``.
    aborted: bool = False
    #: Whether the server closed (or dropped) the socket before the call was over.
    server_closed: bool = False
    #: Every frame the server sent (Twilio expects none on a unidirectional stream).
    received: list[str | bytes] = field(default_factory=list)
    #: The close code and reason received from the server (1006 when there was no close
    #: frame, as after an abort).
    close_code: int | None = None
    close_reason: str = ""

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio sent on the track that got the most."""
        return max(self.media_sent.values(), default=0) * FRAME_MS / 1000


def new_stream_sid() -> str:
    """A Twilio-style stream SID: ``MZ`` and 32 lowercase hex digits."""
    return "MZ" + secrets.token_hex(16)


def connected_message() -> dict[str, Any]:
    """The first message of every stream; it has no sequence number."""
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start_message(
    *,
    sequence: int,
    account_sid: str,
    call_sid: str,
    stream_sid: str,
    tracks: Sequence[str],
    custom_parameters: Mapping[str, str],
) -> dict[str, Any]:
    """The ``start`` message: who is streaming what, in which format."""
    return {
        "event": "start",
        "sequenceNumber": str(sequence),
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": list(tracks),
            "customParameters": dict(custom_parameters),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": stream_sid,
    }


def media_message(
    *, sequence: int, stream_sid: str, track: str, chunk: int, timestamp_ms: int, audio: bytes
) -> dict[str, Any]:
    """One ``media`` message: 20 ms of one track's mu-law audio, base64."""
    return {
        "event": "media",
        "sequenceNumber": str(sequence),
        "media": {
            "track": track,
            "chunk": str(chunk),
            "timestamp": str(timestamp_ms),
            "payload": base64.b64encode(audio).decode("ascii"),
        },
        "streamSid": stream_sid,
    }


def stop_message(
    *, sequence: int, account_sid: str, call_sid: str, stream_sid: str
) -> dict[str, Any]:
    """The ``stop`` message: the stream (or the call) has ended."""
    return {
        "event": "stop",
        "sequenceNumber": str(sequence),
        "stop": {"accountSid": account_sid, "callSid": call_sid},
        "streamSid": stream_sid,
    }


def _frames(recording: Recording, tracks: Sequence[str], count: int) -> Iterator[list[bytes]]:
    """``count`` steps of 20 ms, one full frame per track (padded with silence)."""
    cut = [list(recording.frames(track, FRAME_MS)) for track in tracks]
    for step in range(count):
        yield [
            frames[step].ljust(_FRAME_BYTES, _MULAW_SILENCE)
            if step < len(frames)
            else _MULAW_SILENCE * _FRAME_BYTES
            for frames in cut
        ]


def _frame_count(recording: Recording, tracks: Sequence[str], cut_after: float | None) -> int:
    longest = max(len(recording.tracks[track]) for track in tracks)
    count = math.ceil(longest / _FRAME_BYTES)
    if cut_after is not None:
        count = min(count, math.floor(cut_after * 1000 / FRAME_MS + 1e-9))
    return count


async def play_call(
    url: str,
    recording: Recording,
    *,
    call_sid: str,
    stream_sid: str | None = None,
    account_sid: str = DEMO_ACCOUNT_SID,
    custom_parameters: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    auth_token: str | None = None,
    signature_url: str | None = None,
    speed: float = 1.0,
    tracks: Sequence[str] = ("inbound", "outbound"),
    cut_after: float | None = None,
    send_stop: bool = True,
) -> PlayResult:
    """Stream ``recording`` to the media-stream WebSocket at ``url`` as Twilio would.

    Audio is paced at real time divided by ``speed`` (``0`` or ``math.inf``: as fast as
    the socket takes it). With ``auth_token`` the upgrade request carries an
    ``X-Twilio-Signature`` over ``signature_url`` (default ``url``; Twilio signs the
    public ``wss://`` URL). ``cut_after`` (seconds of audio) aborts the socket after that
    much audio, with no ``stop`` and no close frame. Without it the call ends with
    ``stop`` (unless ``send_stop`` is false) and a normal close. If the server closes
    first, playing stops there; a refused upgrade raises websockets' ``InvalidStatus``.
    """
    if speed < 0 or math.isnan(speed):
        raise ValueError("speed must be positive, or 0/inf for as fast as possible")
    unknown = [track for track in tracks if track not in recording.tracks]
    if unknown or not tracks:
        raise ValueError(f"tracks must be some of {sorted(recording.tracks)}, got {list(tracks)}")
    sid = stream_sid or new_stream_sid()
    result = PlayResult(stream_sid=sid, media_sent=dict.fromkeys(tracks, 0))
    upgrade_headers = dict(headers or {})
    if auth_token is not None:
        upgrade_headers["X-Twilio-Signature"] = twilio_signature(auth_token, signature_url or url)
    ws = await connect(
        url,
        additional_headers=upgrade_headers,
        user_agent_header=_USER_AGENT,
        compression=None,
    )
    reader = asyncio.create_task(_read(ws, result.received))
    try:
        ids = (account_sid, call_sid)
        await _stream(ws, recording, result, ids, tracks, custom_parameters, speed, cut_after)
        if cut_after is not None and not result.server_closed:
            result.aborted = True
            ws.transport.abort()
        elif send_stop and not result.server_closed:
            stop = stop_message(
                sequence=result.messages_sent,
                account_sid=account_sid,
                call_sid=call_sid,
                stream_sid=sid,
            )
            await _send(ws, result, stop)
            result.stop_sent = not result.server_closed
        if not result.aborted:
            await ws.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), _CLOSE_WAIT)
    finally:
        if not reader.done():
            ws.transport.abort()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    result.close_code = ws.close_code
    result.close_reason = ws.close_reason or ""
    return result


async def _stream(
    ws: ClientConnection,
    recording: Recording,
    result: PlayResult,
    ids: tuple[str, str],
    tracks: Sequence[str],
    custom_parameters: Mapping[str, str] | None,
    speed: float,
    cut_after: float | None,
) -> None:
    """``connected``, ``start`` and the media, paced; stops early if the server closes."""
    account_sid, call_sid = ids
    await _send(ws, result, connected_message())
    start = start_message(
        sequence=1,
        account_sid=account_sid,
        call_sid=call_sid,
        stream_sid=result.stream_sid,
        tracks=tracks,
        custom_parameters=custom_parameters or {},
    )
    if not await _send(ws, result, start):
        return
    interval = 0.0 if speed in (0.0, math.inf) else FRAME_MS / 1000 / speed
    loop = asyncio.get_running_loop()
    began = loop.time()
    count = _frame_count(recording, tracks, cut_after)
    for step, frames in enumerate(_frames(recording, tracks, count)):
        # A frame goes out once its 20 ms have "happened", as on a live call.
        delay = began + (step + 1) * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for track, audio in zip(tracks, frames, strict=True):
            message = media_message(
                sequence=result.messages_sent,
                stream_sid=result.stream_sid,
                track=track,
                chunk=result.media_sent[track] + 1,
                timestamp_ms=step * FRAME_MS,
                audio=audio,
            )
            if not await _send(ws, result, message):
                return
            result.media_sent[track] += 1


async def _send(ws: ClientConnection, result: PlayResult, message: dict[str, Any]) -> bool:
    """Send one message; False (and ``server_closed``) if the server has closed."""
    try:
        await ws.send(json.dumps(message, separators=(",", ":")))
    except ConnectionClosed:
        result.server_closed = True
        return False
    result.messages_sent += 1
    return True


async def _read(ws: ClientConnection, received: list[str | bytes]) -> None:
    """Keep every frame the server sends, until the socket closes."""
    with contextlib.suppress(ConnectionClosed):
        async for frame in ws:
            received.append(frame)
