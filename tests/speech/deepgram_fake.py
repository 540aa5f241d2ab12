"""A local stand-in for Deepgram's live API (``/v1/listen``) on 127.0.0.1.

It speaks Deepgram's wire format (research: speech.md sections 2.1-2.4): the
``Authorization: Token <key>`` handshake (401 with a ``dg-error`` header
otherwise), binary mu-law frames counted as audio time, scripted ``Results``
(interim, then ``is_final``/``speech_final``), ``SpeechStarted``,
``UtteranceEnd``, ``KeepAlive`` ignored, ``Finalize`` flushed with
``from_finalize``, ``CloseStream`` answered with the last results, ``Metadata``
and a 1000 close, and errors as close frames whose reason carries Deepgram's
code (``NET-0001`` after an idle spell, ``DATA-0000`` for an empty frame).

Results fire at audio time, so a test feeds bytes and gets the same results
however fast it feeds them. Every track (connection) plays the same script, or
each its own (``scripts``, in the order connections open).

    async with running_fake(script=[Utterance(0.5, 2.0, "hello there")], key="k") as fake:
        engine = DeepgramEngine("k", Settings(deepgram_url=fake.url))
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["DeepgramFake", "FakeConnection", "Session", "Utterance", "running_fake"]


class _QuietServer(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The fake's websockets logger without DEBUG lines: they print the request headers,
    and tests check that the client's key appears in no log record."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


MODEL_UUID = "1dbdfb4d-85b2-4659-9831-16b3c76229aa"
MODEL_INFO = {"name": "2-general-nova", "version": "2024-01-09.29447", "arch": "nova-3"}


@dataclass(frozen=True, slots=True)
class Utterance:
    """One scripted utterance: its words are spread evenly over [start, end] of audio.

    ``split`` delivers its final as two ``is_final`` chunks (``speech_final`` on
    the second only); ``speech_final=False`` never sets ``speech_final``, so only
    ``UtteranceEnd`` ends it. ``confidences`` are those of the first and second chunk.
    """

    start: float
    end: float
    text: str
    split: bool = False
    speech_final: bool = True
    confidences: tuple[float, float] = (0.9, 0.7)

    def words(self) -> list[tuple[str, float, float]]:
        """(word, start, end) for each word."""
        texts = self.text.split()
        step = (self.end - self.start) / max(len(texts), 1)
        return [
            (word, self.start + i * step, self.start + (i + 1) * step)
            for i, word in enumerate(texts)
        ]


class Session:
    """One connection's transcription state: audio time in, Deepgram messages out (pure)."""

    def __init__(
        self,
        script: Sequence[Utterance],
        request_id: str,
        *,
        utterance_end: float | None,
        interim_step: float,
        silence_step: float,
    ) -> None:
        self._script = sorted(script, key=lambda u: u.start)
        self._request_id = request_id
        self._utterance_end = utterance_end
        self._interim_step = interim_step
        self._silence_step = silence_step
        self._cursor = 0  # the utterance being heard or next
        self._committed = 0  # words of it already sent in is_final results
        self._final_until = 0.0  # is_final results tile the audio up to here
        self._last_interim = -1.0
        self._started = False
        self._due_end: tuple[float, float] | None = None  # UtteranceEnd (when, last_word_end)

    def advance(self, t: float) -> list[dict[str, Any]]:
        """The messages due once ``t`` seconds of audio have arrived."""
        out: list[dict[str, Any]] = []
        while True:
            if self._due_end and t >= self._due_end[0]:
                last_word_end = self._due_end[1]
                self._due_end = None
                out.append(
                    {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last_word_end}
                )
            u = self._script[self._cursor] if self._cursor < len(self._script) else None
            if u is not None and t >= u.end:
                out += self._finals(u, u.end, last=True)
                continue
            if u is not None and u.start <= t:
                out += self._interim(u, t)
            else:
                silence_end = t if u is None else min(t, u.start)
                if silence_end - self._final_until >= self._silence_step:
                    out.append(self._result([], self._final_until, silence_end, is_final=True))
                    self._final_until = silence_end
            return out

    def finalize(self, t: float) -> list[dict[str, Any]]:
        """``Finalize``: what was heard so far becomes final, marked ``from_finalize``."""
        out = self.advance(t)
        u = self._script[self._cursor] if self._cursor < len(self._script) else None
        heard = self._heard(u, t) if u is not None and u.start <= t else []
        out.append(self._result(heard, self._final_until, t, is_final=True, from_finalize=True))
        self._committed += len(heard)
        self._final_until = t
        return out

    def close(self, t: float, audio: bytes, channels: int) -> list[dict[str, Any]]:
        """``CloseStream``: the last results for the audio heard, then ``Metadata``."""
        out = self.advance(t)
        u = self._script[self._cursor] if self._cursor < len(self._script) else None
        heard = self._heard(u, t) if u is not None and u.start <= t else []
        if heard:
            out.append(self._result(heard, self._final_until, t, is_final=True))
        out.append(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self._request_id,
                "sha256": hashlib.sha256(audio).hexdigest(),
                "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "duration": t,
                "channels": channels,
                "models": [MODEL_UUID],
                "model_info": {MODEL_UUID: MODEL_INFO},
            }
        )
        return out

    def _heard(self, u: Utterance, t: float) -> list[tuple[str, float, float]]:
        words = u.words()
        return [w for w in words[self._committed :] if w[2] <= t + 1e-9]

    def _interim(self, u: Utterance, t: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            out.append({"type": "SpeechStarted", "channel": [0, 1], "timestamp": u.start})
        heard = self._heard(u, t)
        if heard and t - self._last_interim >= self._interim_step:
            self._last_interim = t
            conf = u.confidences[0]
            out.append(self._result(heard, self._final_until, t, is_final=False, conf=conf))
        return out

    def _finals(self, u: Utterance, t: float, *, last: bool) -> list[dict[str, Any]]:
        words = u.words()[self._committed :]
        speech_final = u.speech_final and last
        if u.split and len(words) >= 2:
            half = len(words) // 2
            first, second = words[:half], words[half:]
            mid = first[-1][2]
            chunks = [
                (first, self._final_until, mid, False, u.confidences[0]),
                (second, mid, u.end, speech_final, u.confidences[1]),
            ]
        else:
            chunks = [(words, self._final_until, u.end, speech_final, u.confidences[0])]
        out = [
            self._result(
                chunk_words,
                start,
                end,
                is_final=True,
                speech_final=final,
                conf=conf,
            )
            for chunk_words, start, end, final, conf in chunks
        ]
        self._final_until = u.end
        self._cursor += 1
        self._committed = 0
        self._started = False
        self._last_interim = -1.0
        if self._utterance_end is not None:
            self._due_end = (u.end + self._utterance_end, words[-1][2] if words else u.end)
        return out

    def _result(
        self,
        words: Sequence[tuple[str, float, float]],
        start: float,
        end: float,
        *,
        is_final: bool,
        speech_final: bool = False,
        from_finalize: bool = False,
        conf: float = 0.9,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - start, 6),
            "start": round(start, 6),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(word for word, _, _ in words),
                        "confidence": conf if words else 0.0,
                        "words": [
                            {
                                "word": word.lower().strip(".,?!"),
                                "start": round(word_start, 6),
                                "end": round(word_end, 6),
                                "confidence": conf,
                                "punctuated_word": word,
                            }
                            for word, word_start, word_end in words
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self._request_id,
                "model_info": MODEL_INFO,
                "model_uuid": MODEL_UUID,
            },
        }
        if from_finalize:
            message["from_finalize"] = True
        return message


@dataclass
class FakeConnection:
    """What the fake saw on one accepted connection (one track)."""

    query: dict[str, str]
    request_id: str
    bytes_received: int = 0
    frame_sizes: list[int] = field(default_factory=list)
    keepalives: int = 0
    finalizes: int = 0
    close_stream: bool = False
    empty_frames: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    #: The close the fake sent (code, reason), or None: the client closed, or it was dropped.
    closed_with: tuple[int, str] | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    audio: bytearray = field(default_factory=bytearray)


@dataclass
class DeepgramFake:
    """The fake's script, scenario knobs and records; see :func:`running_fake`."""

    key: str
    script: Sequence[Utterance] = ()
    #: One script per connection, in the order they open (instead of ``script``
    #: for all): a real Deepgram hears each track's own words.
    scripts: Sequence[Sequence[Utterance]] = ()
    #: Seconds without any frame before the fake closes 1011 "NET-0001".
    idle_timeout: float = 10.0
    #: Seconds of audio between two interim results.
    interim_step: float = 0.3
    #: Seconds of silence an empty is_final result covers.
    silence_step: float = 1.0
    #: Refuse every handshake with this HTTP status (and a dg-error header).
    refuse_status: int | None = None
    #: Seconds the handshake takes.
    handshake_delay: float = 0.0
    #: Seconds of audio after which the fake drops the connection...
    drop_after: float | None = None
    #: ...with this close frame, or (None) by aborting the TCP connection.
    drop_close: tuple[int, str] | None = None
    #: Seconds the fake takes to answer CloseStream.
    close_delay: float = 0.0

    url: str = ""
    connections: list[FakeConnection] = field(default_factory=list)
    refused: int = 0
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)
    _accepted: dict[int, FakeConnection] = field(default_factory=dict)

    @property
    def queries(self) -> list[dict[str, str]]:
        return [conn.query for conn in self.connections]

    @property
    def keepalives(self) -> int:
        return sum(conn.keepalives for conn in self.connections)

    @property
    def bytes_received(self) -> int:
        return sum(conn.bytes_received for conn in self.connections)

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Returns once ``predicate()`` holds, checked after each thing the fake records."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            while not predicate():
                waiter = loop.create_future()
                self._waiters.append(waiter)
                await waiter

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.handshake_delay:
            await asyncio.sleep(self.handshake_delay)
        parts = urlsplit(request.path)
        if parts.path != "/v1/listen":
            return self._refuse(ws, 404, "Not Found")
        if request.headers.get("Authorization") != f"Token {self.key}":
            return self._refuse(ws, 401, "Invalid credentials.")
        if self.refuse_status is not None:
            return self._refuse(ws, self.refuse_status, "Refused by the test.")
        conn = FakeConnection(query=dict(parse_qsl(parts.query)), request_id=str(uuid.uuid4()))
        self._accepted[id(ws)] = conn
        return None

    def _refuse(self, ws: ServerConnection, status: int, error: str) -> Response:
        self.refused += 1
        self._notify()
        response = ws.respond(status, error)
        response.headers["dg-error"] = error
        return response

    def _process_response(
        self, ws: ServerConnection, request: Request, response: Response
    ) -> Response:
        conn = self._accepted.get(id(ws))
        if conn is not None:
            response.headers["dg-request-id"] = conn.request_id
        return response

    async def _handler(self, ws: ServerConnection) -> None:
        conn = self._accepted.pop(id(ws))
        self.connections.append(conn)
        self._notify()
        try:
            await self._serve(ws, conn)
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()
            self._notify()

    async def _serve(self, ws: ServerConnection, conn: FakeConnection) -> None:
        channels = int(conn.query.get("channels", "1"))
        per_second = int(conn.query.get("sample_rate", "8000")) * channels
        ue_ms = conn.query.get("utterance_end_ms")
        order = self.connections.index(conn)
        session = Session(
            self.scripts[order % len(self.scripts)] if self.scripts else self.script,
            conn.request_id,
            utterance_end=(
                int(ue_ms) / 1000 if ue_ms and conn.query.get("interim_results") == "true" else None
            ),
            interim_step=self.interim_step,
            silence_step=self.silence_step,
        )
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    frame = await ws.recv()
            except TimeoutError:
                await self._close(ws, conn, 1011, "NET-0001")
                return
            if isinstance(frame, bytes):
                if not frame:
                    conn.empty_frames += 1
                    await self._close(ws, conn, 1008, "DATA-0000")
                    return
                conn.bytes_received += len(frame)
                conn.frame_sizes.append(len(frame))
                conn.audio += frame
                self._notify()
                t = conn.bytes_received / per_second
                await self._send(ws, conn, session.advance(t))
                if self.drop_after is not None and t >= self.drop_after:
                    if self.drop_close is None:
                        ws.transport.abort()
                        return
                    await self._close(ws, conn, *self.drop_close)
                    return
                continue
            kind = json.loads(frame).get("type")
            t = conn.bytes_received / per_second
            if kind == "KeepAlive":
                conn.keepalives += 1
                self._notify()
            elif kind == "Finalize":
                conn.finalizes += 1
                await self._send(ws, conn, session.finalize(t))
            elif kind == "CloseStream":
                conn.close_stream = True
                self._notify()
                if self.close_delay:
                    await asyncio.sleep(self.close_delay)
                await self._send(ws, conn, session.close(t, bytes(conn.audio), channels))
                await self._close(ws, conn, 1000, "")
                return

    async def _send(
        self, ws: ServerConnection, conn: FakeConnection, messages: list[dict[str, Any]]
    ) -> None:
        for message in messages:
            conn.sent.append(message)
            await ws.send(json.dumps(message))

    async def _close(
        self, ws: ServerConnection, conn: FakeConnection, code: int, reason: str
    ) -> None:
        conn.closed_with = (code, reason)
        await ws.close(code, reason)


@asynccontextmanager
async def running_fake(
    *, script: Sequence[Utterance] = (), key: str = "test-key", **options: Any
) -> AsyncIterator[DeepgramFake]:
    """A fake Deepgram on a free port of 127.0.0.1 (``options``: :class:`DeepgramFake`'s knobs)."""
    fake = DeepgramFake(key=key, script=script, **options)
    server: Server = await serve(
        fake._handler,
        "127.0.0.1",
        0,
        process_request=fake._process_request,
        process_response=fake._process_response,
        logger=_QuietServer(logging.getLogger("websockets.server"), {}),
    )
    port = server.sockets[0].getsockname()[1]
    fake.url = f"ws://127.0.0.1:{port}/v1/listen"
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()
