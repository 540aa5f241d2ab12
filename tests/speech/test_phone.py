"""The Twilio-shaped client sends what Twilio sends, and the recording it plays is sound.

Every test talks to a real websockets server on 127.0.0.1 that keeps each message,
its arrival time and how the socket ended.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from scribeline.demo.phone import DEMO_ACCOUNT_SID, play_call
from scribeline.demo.recording import Recording, load_call

CALL_SID = "CA" + "1" * 32
STREAM_SID = "MZ" + "2" * 32

Hook = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]


@dataclass
class Session:
    """What the server saw of one connection."""

    headers: Headers = field(default_factory=Headers)
    messages: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    binary_frames: int = 0
    close_code: int | None = None
    abnormal: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Server:
    url: str
    sessions: list[Session]
    hook: list[Hook]

    async def finished(self) -> Session:
        """The single session, once the client's socket has ended."""
        assert len(self.sessions) == 1
        await asyncio.wait_for(self.sessions[0].done.wait(), 10)
        return self.sessions[0]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    sessions: list[Session] = []
    hooks: list[Hook] = []

    async def handler(ws: ServerConnection) -> None:
        session = Session(headers=ws.request.headers if ws.request else Headers())
        sessions.append(session)
        loop = asyncio.get_running_loop()
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    session.binary_frames += 1
                    continue
                message = json.loads(frame)
                session.messages.append(message)
                session.arrivals.append(loop.time())
                for hook in hooks:
                    await hook(ws, message)
        except ConnectionClosedError:
            session.abnormal = True
        except ConnectionClosed:
            pass
        finally:
            session.close_code = ws.close_code
            session.done.set()

    async with serve(handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        yield Server(f"ws://127.0.0.1:{port}/v1/media-stream", sessions, hooks)


@pytest.fixture(scope="module")
def call() -> Recording:
    return load_call()


def _media(session: Session, track: str | None = None) -> list[dict[str, Any]]:
    return [
        m["media"]
        for m in session.messages
        if m["event"] == "media" and (track is None or m["media"]["track"] == track)
    ]


async def test_a_whole_call_is_sent_as_twilio_messages(server: Server, call: Recording) -> None:
    """connected, start, both tracks' media at a 20 ms cadence, stop, then a normal close."""
    result = await play_call(
        server.url,
        call,
        call_sid=CALL_SID,
        stream_sid=STREAM_SID,
        custom_parameters={"token": "t-1", "inbound_speaker": "user"},
        speed=math.inf,
    )
    session = await server.finished()
    messages = session.messages
    frames = math.ceil(len(call.tracks["inbound"]) / 160)

    assert messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert messages[1] == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": DEMO_ACCOUNT_SID,
            "streamSid": STREAM_SID,
            "callSid": CALL_SID,
            "tracks": ["inbound", "outbound"],
            "customParameters": {"token": "t-1", "inbound_speaker": "user"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": STREAM_SID,
    }
    assert messages[-1] == {
        "event": "stop",
        "sequenceNumber": str(len(messages) - 1),
        "stop": {"accountSid": DEMO_ACCOUNT_SID, "callSid": CALL_SID},
        "streamSid": STREAM_SID,
    }
    assert [m["event"] for m in messages] == ["connected", "start"] + ["media"] * 2 * frames + [
        "stop"
    ]
    # Sequence numbers are strings counting every message after `connected`.
    assert [m["sequenceNumber"] for m in messages[1:]] == [str(n) for n in range(1, len(messages))]
    assert all(m["streamSid"] == STREAM_SID for m in messages[1:])
    for track in ("inbound", "outbound"):
        media = _media(session, track)
        assert [m["chunk"] for m in media] == [str(n) for n in range(1, frames + 1)]
        assert [m["timestamp"] for m in media] == [str(20 * n) for n in range(frames)]
        payloads = [base64.b64decode(m["payload"]) for m in media]
        assert {len(p) for p in payloads} == {160}
        assert b"".join(payloads) == call.tracks[track]
    # The tracks are interleaved: both frames of a 20 ms step go out together.
    pairs = list(zip(_media(session)[::2], _media(session)[1::2], strict=True))
    assert all(a["timestamp"] == b["timestamp"] for a, b in pairs)
    assert {(a["track"], b["track"]) for a, b in pairs} == {("inbound", "outbound")}

    assert session.binary_frames == 0
    assert session.close_code == 1000 and not session.abnormal
    assert result.stop_sent and not result.aborted and not result.server_closed
    assert result.media_sent == {"inbound": frames, "outbound": frames}
    assert result.messages_sent == len(messages)
    assert result.received == []
    assert (result.close_code, result.stream_sid) == (1000, STREAM_SID)
    assert result.audio_seconds == pytest.approx(call.duration)


async def test_audio_is_paced_at_real_time_over_speed(server: Server, call: Recording) -> None:
    """At speed 5, one second of audio (50 steps) takes at least 0.2 s to arrive."""
    await play_call(server.url, call, call_sid=CALL_SID, speed=5, cut_after=1.0)
    session = await server.finished()
    media_times = [
        t for m, t in zip(session.messages, session.arrivals, strict=True) if m["event"] == "media"
    ]
    assert len(media_times) == 100
    # Paced from the client's send of `start`, measured from its arrival here: the bounds
    # leave room for a busy machine delaying the first arrivals.
    elapsed = media_times[-1] - session.arrivals[1]
    assert 0.15 <= elapsed < 2.0
    # Not a burst at the end: the middle step (due at 0.1 s) is well under way.
    assert media_times[50] - session.arrivals[1] >= 0.05


async def test_cut_after_drops_the_socket_without_stop_or_close(
    server: Server, call: Recording
) -> None:
    """cut_after sends that much audio per track, then aborts: no stop, no close frame."""
    result = await play_call(server.url, call, call_sid=CALL_SID, speed=0, cut_after=1.5)
    session = await server.finished()

    assert [m["event"] for m in session.messages] == ["connected", "start"] + ["media"] * 150
    assert _media(session, "inbound")[-1]["timestamp"] == "1480"
    assert session.abnormal and session.close_code == 1006
    assert result.aborted and not result.stop_sent
    assert result.media_sent == {"inbound": 75, "outbound": 75}
    assert result.close_code == 1006


async def test_frames_from_the_server_and_its_close_are_recorded(
    server: Server, call: Recording
) -> None:
    """A server that answers and then closes with 4401 stops the call there, on record."""

    closing: list[asyncio.Task[None]] = []

    async def refuse(ws: ServerConnection, message: dict[str, Any]) -> None:
        if message["event"] == "start":
            await ws.send('{"event":"clear"}')
            # Closing in a task lets the handler go on reading what is already in flight.
            closing.append(asyncio.create_task(ws.close(4401, "bad token")))

    server.hook.append(refuse)
    result = await play_call(server.url, call, call_sid=CALL_SID, speed=1)
    session = await server.finished()

    events = [m["event"] for m in session.messages]
    assert events[:2] == ["connected", "start"]
    assert set(events[2:]) <= {"media"} and len(events) < 100
    assert result.received == ['{"event":"clear"}']
    assert (result.close_code, result.close_reason) == (4401, "bad token")
    assert result.server_closed and not result.stop_sent and not result.aborted


async def test_one_track_and_no_stop(server: Server, call: Recording) -> None:
    """tracks=("inbound",) streams only that track; send_stop=False closes without stop."""
    result = await play_call(
        server.url,
        call,
        call_sid=CALL_SID,
        speed=0,
        tracks=("inbound",),
        send_stop=False,
    )
    session = await server.finished()

    assert session.messages[1]["start"]["tracks"] == ["inbound"]
    assert {m["track"] for m in _media(session)} == {"inbound"}
    assert session.messages[-1]["event"] == "media"
    assert session.close_code == 1000
    assert result.media_sent == {"inbound": math.ceil(len(call.tracks["inbound"]) / 160)}
    assert not result.stop_sent


async def test_upgrade_carries_the_twilio_signature_and_headers(
    server: Server, call: Recording
) -> None:
    """With an auth token the upgrade is signed over the public URL, like Twilio's."""
    public = "wss://scribeline.example.com/v1/media-stream"
    await play_call(
        server.url,
        call,
        call_sid=CALL_SID,
        speed=0,
        cut_after=0.02,
        auth_token="12345",
        signature_url=public,
        headers={"X-Extra": "yes"},
    )
    session = await server.finished()

    expected = base64.b64encode(hmac.new(b"12345", public.encode(), hashlib.sha1).digest())
    assert session.headers["X-Twilio-Signature"] == expected.decode()
    assert session.headers["X-Extra"] == "yes"
    assert session.headers["User-Agent"] == "Twilio.TmeWs/1.0"


async def test_bad_arguments_are_refused(server: Server, call: Recording) -> None:
    """An unknown track or a negative speed fails before connecting."""
    with pytest.raises(ValueError):
        await play_call(server.url, call, call_sid=CALL_SID, tracks=("both",))
    with pytest.raises(ValueError):
        await play_call(server.url, call, call_sid=CALL_SID, speed=-1)
    assert server.sessions == []


# The recording played above.


def _ulaw_level(audio: bytes) -> float:
    """RMS of mu-law bytes in 16-bit units (G.711 decoding)."""
    total = 0
    for byte in audio:
        code = ~byte & 0xFF
        magnitude = ((((code & 0x0F) << 3) + 0x84) << ((code >> 4) & 0x07)) - 0x84
        total += magnitude * magnitude
    return math.sqrt(total / max(len(audio), 1))


def test_recording_manifest_matches_its_audio(call: Recording) -> None:
    """Both tracks fill the duration; speech is where the manifest says, on its own track."""
    assert len(call.tracks["inbound"]) == len(call.tracks["outbound"])
    assert len(call.tracks["inbound"]) == round(call.duration * 8000)
    assert 25 <= call.duration <= 30
    assert {u.track for u in call.utterances} == {"inbound", "outbound"}
    tracks = [u.track for u in call.utterances]
    assert all(a != b for a, b in pairwise(tracks)), "speakers alternate"
    for before, after in pairwise(call.utterances):
        assert before.end < after.start
    for u in call.utterances:
        other = "outbound" if u.track == "inbound" else "inbound"
        span = slice(round(u.start * 8000), round(u.end * 8000))
        assert _ulaw_level(call.tracks[u.track][span]) > 1000, u.text
        assert _ulaw_level(call.tracks[other][span]) < 30, u.text


def test_frames_cut_a_track_into_20_ms(call: Recording) -> None:
    """frames() yields 160-byte frames that add up to the track."""
    frames = list(call.frames("outbound"))
    assert {len(f) for f in frames[:-1]} == {160}
    assert b"".join(frames) == call.tracks["outbound"]
    assert [len(f) for f in call.frames("inbound", ms=1000)][:2] == [8000, 8000]
    assert "Daniel Morgan" in call.text("inbound")
    assert "Daniel Morgan" not in call.text("outbound")
