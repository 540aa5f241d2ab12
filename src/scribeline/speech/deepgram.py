"""The Deepgram engine: one live ``/v1/listen`` WebSocket per track.

Twilio's 8 kHz mu-law bytes go to Deepgram unchanged as binary frames, and
Deepgram's ``Results`` come back as segments (research: speech.md section 2.4):

* an interim result is a partial of the open utterance: the text committed so
  far plus the interim text;
* ``is_final`` chunks are committed; ``speech_final``, a ``from_finalize``
  result, an ``UtteranceEnd`` (the safety net when ``speech_final`` is missed in
  noise) or the end of the stream turn the committed text into the final.

Times are Deepgram's, which count the audio sent: the caller fills gaps with
silence, so they are seconds from the track's first byte.

Known limits: a track whose audio waits unsent for more than
:data:`MAX_QUEUED_SECONDS` fails (Deepgram, or the network to it, is too slow)
rather than buffering without bound. The API key goes only into the handshake's
``Authorization`` header, never into a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from scribeline.config import Settings
from scribeline.speech.engine import (
    BYTES_PER_SECOND,
    OnSegment,
    Segment,
    SpeechEngine,
    SpeechFailed,
    SpeechTrack,
    SpeechUnavailable,
    SpeechUnreachable,
)

__all__ = ["FRAME_BYTES", "MAX_QUEUED_SECONDS", "DeepgramEngine", "DeepgramTrack", "Utterances"]

log = logging.getLogger(__name__)


class _QuietHandshake(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The websockets logger without its DEBUG lines, which print the handshake's
    headers, ``Authorization: Token <key>`` included."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WS_LOG: Final = _QuietHandshake(logging.getLogger("websockets.client"), {})

#: Most audio in one binary frame: 100 ms (Deepgram suggests 20-100 ms frames).
FRAME_BYTES: Final = BYTES_PER_SECOND // 10
#: Audio that may wait unsent before the track fails.
MAX_QUEUED_SECONDS: Final = 10
#: Audio (seconds) a track buffers before ready() holds a faster-than-real-time producer.
READY_SECONDS: Final = 1
#: Largest message accepted from Deepgram (a long utterance's word list is far smaller).
MAX_MESSAGE_BYTES: Final = 1024 * 1024
#: Seconds ``finish`` waits beyond ``close_timeout`` for Deepgram's last results.
FINISH_GRACE: Final = 5.0

_KEEPALIVE: Final = json.dumps({"type": "KeepAlive"})
_CLOSE_STREAM: Final = json.dumps({"type": "CloseStream"})
#: Deepgram's error reasons ("NET-0001", "DATA-0000"): an error whatever the close code.
_ERROR_REASON: Final = re.compile(r"^[A-Z]+-\d{4}\b")


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One non-empty ``is_final`` result of the open utterance."""

    text: str
    start: float  # of its first word (of the result, without words)
    end: float  # of its last word
    duration: float  # of the audio the result covers: its confidence's weight
    confidence: float | None


class Utterances:
    """Turns one channel's Deepgram messages into segments (pure: no I/O, no clock)."""

    def __init__(self) -> None:
        self.index = 1
        self._chunks: list[_Chunk] = []
        self._partial_span: tuple[float, float] | None = None  # the last partial's

    def results(self, message: dict[str, Any]) -> list[Segment]:
        """The segments a ``Results`` message makes (at most a partial, or a final)."""
        alternatives = message.get("channel", {}).get("alternatives") or [{}]
        best = alternatives[0]
        transcript = str(best.get("transcript") or "").strip()
        start, end = _span(message, best)
        if not message.get("is_final"):
            if not transcript:
                return []
            texts = [chunk.text for chunk in self._chunks] + [transcript]
            first = self._chunks[0].start if self._chunks else start
            self._partial_span = (first, max(end, first))
            return [Segment(self.index, " ".join(texts), False, *self._partial_span)]
        if transcript:
            confidence = best.get("confidence")
            value = None if confidence is None else min(max(float(confidence), 0.0), 1.0)
            duration = float(message.get("duration") or 0.0)
            self._chunks.append(_Chunk(transcript, start, end, duration, value))
        if message.get("speech_final") or message.get("from_finalize"):
            return self.flush()
        return []

    def utterance_end(self) -> list[Segment]:
        """An ``UtteranceEnd``: the final, if ``speech_final`` was missed."""
        return self.flush()

    def flush(self) -> list[Segment]:
        """The open utterance's final, if it has one (an end signal, or the stream's end).

        An utterance that was shown as a partial but whose committed text is empty
        (Deepgram revised it away) gets an empty final, so that it is closed."""
        if not self._chunks and self._partial_span is None:
            return []
        chunks, span = self._chunks, self._partial_span
        self._chunks, self._partial_span = [], None
        if chunks:
            text = " ".join(chunk.text for chunk in chunks)
            segment = Segment(
                self.index, text, True, chunks[0].start, chunks[-1].end, _confidence(chunks)
            )
        else:
            segment = Segment(self.index, "", True, *(span or (0.0, 0.0)))
        self.index += 1
        return [segment]


def _span(message: dict[str, Any], best: dict[str, Any]) -> tuple[float, float]:
    """The seconds a result's words span, or (without words) the audio it covers."""
    start = float(message.get("start") or 0.0)
    end = start + float(message.get("duration") or 0.0)
    words = best.get("words") or []
    try:
        return float(words[0]["start"]), max(float(words[-1]["end"]), float(words[0]["start"]))
    except (IndexError, KeyError, TypeError, ValueError):
        return start, end


def _confidence(chunks: list[_Chunk]) -> float | None:
    """The duration-weighted mean of the chunks' confidences (plain mean if no duration)."""
    rated = [chunk for chunk in chunks if chunk.confidence is not None]
    if not rated:
        return None
    weights = [max(chunk.duration, 0.0) for chunk in rated]
    total = sum(weights)
    if total <= 0:
        return sum(chunk.confidence or 0.0 for chunk in rated) / len(rated)
    return (
        sum(w * (chunk.confidence or 0.0) for w, chunk in zip(weights, rated, strict=True)) / total
    )


class DeepgramEngine(SpeechEngine):
    """Opens one Deepgram live-transcription WebSocket per track (``channels=1``)."""

    name = "deepgram"

    def __init__(
        self,
        api_key: str,
        settings: Settings,
        *,
        keepalive_interval: float = 5.0,
        open_timeout: float = 10.0,
    ) -> None:
        self._api_key = api_key
        self._settings = settings
        self._keepalive_interval = keepalive_interval
        self._open_timeout = open_timeout

    def listen_url(self) -> str:
        """Deepgram's URL with the query this engine sends (it holds no secret)."""
        s = self._settings
        query = urlencode(
            {
                "model": s.deepgram_model,
                "language": s.deepgram_language,
                "encoding": "mulaw",
                "sample_rate": BYTES_PER_SECOND,
                "channels": 1,
                "interim_results": "true",
                "endpointing": s.deepgram_endpointing_ms,
                "utterance_end_ms": s.deepgram_utterance_end_ms,
                "smart_format": "true",
                "punctuate": "true",
                "vad_events": "true",
            }
        )
        separator = "&" if "?" in s.deepgram_url else "?"
        return f"{s.deepgram_url}{separator}{query}"

    async def open_track(self, on_segment: OnSegment, label: str) -> SpeechTrack:
        if not self._api_key:
            raise SpeechUnavailable("no Deepgram API key is configured")
        try:
            ws = await connect(
                self.listen_url(),
                additional_headers={"Authorization": f"Token {self._api_key}"},
                open_timeout=self._open_timeout,
                close_timeout=self._settings.close_timeout,
                max_size=MAX_MESSAGE_BYTES,
                logger=_WS_LOG,
            )
        except InvalidStatus as exc:
            raise self._refused(exc, label) from None
        except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else self._safe(str(exc))
            log.warning("deepgram track %s: cannot connect: %s", label, reason)
            raise SpeechUnreachable(f"cannot connect to Deepgram: {reason}") from None
        request_id = ws.response.headers.get("dg-request-id", "") if ws.response else ""
        log.info("deepgram track %s opened (request_id %s)", label, request_id or "unknown")
        return DeepgramTrack(
            ws,
            on_segment,
            label,
            keepalive_interval=self._keepalive_interval,
            finish_timeout=self._settings.close_timeout + FINISH_GRACE,
        )

    def _refused(self, exc: InvalidStatus, label: str) -> SpeechUnavailable | SpeechUnreachable:
        status = exc.response.status_code
        detail = self._safe(exc.response.headers.get("dg-error", ""))[:200]
        log.warning("deepgram track %s: handshake refused: HTTP %d %s", label, status, detail)
        if status in (401, 403):
            return SpeechUnavailable("Deepgram refused the API key")
        suffix = f" ({detail})" if detail else ""
        message = f"Deepgram refused the connection: HTTP {status}{suffix}"
        # A server error or a rate limit may pass; a bad request will not.
        return (
            SpeechUnreachable(message)
            if status >= 500 or status == 429
            else SpeechUnavailable(message)
        )

    def _safe(self, text: str) -> str:
        """``text`` without the key, should a library or Deepgram ever echo it."""
        return text.replace(self._api_key, "[redacted]") if self._api_key else text


class DeepgramTrack(SpeechTrack):
    """One open Deepgram socket: a sender task for audio, a receiver task for results."""

    def __init__(
        self,
        ws: ClientConnection,
        on_segment: OnSegment,
        label: str,
        *,
        keepalive_interval: float,
        finish_timeout: float,
    ) -> None:
        self._ws = ws
        self._on_segment = on_segment
        self._label = label
        self._keepalive_interval = keepalive_interval
        self._finish_timeout = finish_timeout
        self._utterances = Utterances()
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._sent = 0
        self._wake = asyncio.Event()
        # Set while at most READY_SECONDS of audio wait to be sent (see ready()).
        self._drained = asyncio.Event()
        self._drained.set()
        self._ending = False  # finish() called: send what is queued, then CloseStream
        self._closed = False  # finish() or abort() has run: nothing more goes out
        self._failure: str | None = None
        self._closer: asyncio.Task[None] | None = None
        self._request_id = ws.response.headers.get("dg-request-id", "") if ws.response else ""
        self._sender = asyncio.create_task(self._send_loop(), name=f"deepgram-send {label}")
        self._receiver = asyncio.create_task(self._receive_loop(), name=f"deepgram-recv {label}")

    def feed(self, mulaw: bytes) -> None:
        if self._failure is not None:
            raise SpeechFailed(self._failure)
        if self._ending or self._closed:
            raise SpeechFailed("the track is finished")
        if not mulaw:
            return  # an empty binary frame would end Deepgram's stream
        if self._queued + len(mulaw) > MAX_QUEUED_SECONDS * BYTES_PER_SECOND:
            self._fail(f"Deepgram fell behind by more than {MAX_QUEUED_SECONDS} s of audio")
            self._sender.cancel()
            self._closer = asyncio.create_task(self._ws.close(1011, "client overflow"))
            raise SpeechFailed(self._failure or "")
        self._queue.append(bytes(mulaw))
        self._queued += len(mulaw)
        if self._queued > READY_SECONDS * BYTES_PER_SECOND:
            self._drained.clear()
        self._wake.set()

    async def ready(self) -> None:
        await self._drained.wait()

    async def finish(self) -> None:
        if self._closed:
            return
        self._ending = True
        self._wake.set()
        try:
            async with asyncio.timeout(self._finish_timeout):
                await asyncio.shield(self._receiver)
        except TimeoutError:
            self._fail("Deepgram did not close the stream in time")
        finally:
            self._closed = True
            await self._stop()
        for segment in self._utterances.flush():
            await self._on_segment(segment)
        if self._failure is not None:
            raise SpeechFailed(self._failure)

    async def abort(self) -> None:
        self._closed = True
        self._queue.clear()
        await self._stop()

    async def _stop(self) -> None:
        self._drained.set()
        for task in (self._sender, self._receiver):
            task.cancel()
        for task in (self._sender, self._receiver):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._ws.close()

    def _fail(self, reason: str) -> None:
        self._drained.set()  # nobody waits for a failed track
        if self._failure is None:
            self._failure = reason
            log.warning(
                "deepgram track %s failed (request_id %s): %s",
                self._label,
                self._request_id or "unknown",
                reason,
            )

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        try:
            while True:
                if self._queue:
                    await self._ws.send(self._next_frame())
                    last_sent = loop.time()
                    continue
                if self._ending:
                    await self._ws.send(_CLOSE_STREAM)
                    return
                self._wake.clear()
                wait = last_sent + self._keepalive_interval - loop.time()
                try:
                    async with asyncio.timeout(max(wait, 0.0)):
                        await self._wake.wait()
                except TimeoutError:
                    await self._ws.send(_KEEPALIVE)
                    last_sent = loop.time()
        except ConnectionClosed:
            return  # the receiver reports why

    def _next_frame(self) -> bytes:
        """Up to :data:`FRAME_BYTES` of the queued audio, never empty."""
        parts: list[bytes] = []
        size = 0
        while self._queue and size < FRAME_BYTES:
            chunk = self._queue.popleft()
            room = FRAME_BYTES - size
            if len(chunk) > room:
                self._queue.appendleft(chunk[room:])
                chunk = chunk[:room]
            parts.append(chunk)
            size += len(chunk)
        self._queued -= size
        self._sent += size
        if self._queued <= READY_SECONDS * BYTES_PER_SECOND:
            self._drained.set()
        return b"".join(parts)

    async def _receive_loop(self) -> None:
        try:
            while True:
                message = await self._ws.recv()
                if isinstance(message, str):
                    await self._handle(message)
        except ConnectionClosed as exc:
            self._closed_by(exc)
        except Exception:
            log.exception("deepgram track %s: handling a result failed", self._label)
            self._fail("handling Deepgram's results failed")
            await self._ws.close(1011)

    async def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("deepgram track %s: a message that is not JSON", self._label)
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        segments: list[Segment] = []
        if kind == "Results":
            segments = self._utterances.results(message)
        elif kind == "UtteranceEnd":
            segments = self._utterances.utterance_end()
        elif kind == "Metadata":
            log.info(
                "deepgram track %s: metadata (request_id %s, %.2f s of audio)",
                self._label,
                message.get("request_id", "unknown"),
                float(message.get("duration") or 0.0),
            )
        elif kind == "Error":
            detail = str(message.get("description") or message.get("message") or "")[:200]
            self._fail(f"Deepgram reported an error: {detail}")
        for segment in segments:
            await self._on_segment(segment)

    def _closed_by(self, exc: ConnectionClosed) -> None:
        code = exc.rcvd.code if exc.rcvd else 1006
        reason = exc.rcvd.reason if exc.rcvd else ""
        log.info(
            "deepgram track %s closed (request_id %s): %d %s, %.2f s of audio sent",
            self._label,
            self._request_id or "unknown",
            code,
            reason,
            self._sent / BYTES_PER_SECOND,
        )
        if _ERROR_REASON.match(reason) or code != 1000:
            detail = f"{code} {reason}".strip() if exc.rcvd else "the connection dropped"
            self._fail(f"Deepgram closed the stream: {detail}")
        elif not self._ending:
            self._fail("Deepgram closed the stream before the audio ended")
