"""Media streams: the call a stream transcribes, its tracks and their segments.

A stream names its call by Twilio's ``callSid`` (or a ``call_sid`` custom
parameter). If the organization has no such call yet, the stream creates it
(marked ``"source": "media-stream"``); a call created over REST is attached
to, and whoever drives it over REST ends it. A call made by a media stream is
completed when its last stream ends: several streams may carry one call (one
per track, or a stream stopped and started again around a card number), so a
stream that ends waits ``media_end_grace`` seconds and completes the call
only if no stream of it is left on any node (cluster-wide slots). Each
track's segments become transcript events of the call, with ``segment_id``
``{streamSid}:{in|out}:{n}`` (partials replaced by their final) and times in
seconds from the call's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from scribeline.cluster import Cluster
from scribeline.domain import Call
from scribeline.errors import (
    BrokerUnreachable,
    CallEnded,
    Conflict,
    ConnectionLimit,
    InvalidMessage,
    NotFound,
    StorageUnavailable,
    TranscriptionDisabled,
)
from scribeline.events import TERMINAL_STATUSES, CallStatus, now_ms
from scribeline.ingest.assistants import AssistantService
from scribeline.ingest.calls import CallService
from scribeline.ingest.models import CreateCall, Transcript, valid_call_sid
from scribeline.speech.engine import (
    BYTES_PER_SECOND,
    OnSegment,
    Segment,
    SpeechFailed,
    SpeechTrack,
)
from scribeline.speech.placement import Placement
from scribeline.speech.router import SpeechRouter
from scribeline.speech.settings import OrgSpeech
from scribeline.speech.twilio import Start

__all__ = [
    "MAX_STREAMS_PER_CALL",
    "SOURCE",
    "MediaStream",
    "MediaStreamService",
    "StreamRequest",
    "parse_start",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

SPEAKERS = ("user", "assistant")
_DEFAULT_SPEAKERS = {"inbound": "user", "outbound": "assistant"}
_SHORT = {"inbound": "in", "outbound": "out"}

#: Streams one call may have at once, over every node (Twilio forks at most 4).
MAX_STREAMS_PER_CALL = 4

#: The first status event's metadata of a call that a media stream created.
SOURCE = {"source": "media-stream"}

#: Seconds a final keeps being retried while storage or the broker is unavailable.
FINAL_RETRY_SECONDS = 10.0
_RETRY_PAUSE = 0.5


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a ``start`` message asks for, validated."""

    stream_sid: str
    tracks: tuple[str, ...]
    speakers: dict[str, str]
    call: CreateCall
    #: When ``start`` arrived (ms): media time 0 of the stream.
    started_at: int = field(default_factory=now_ms)


def parse_start(start: Start) -> StreamRequest:
    """Validate ``start``: its format, tracks and custom parameters
    (``call_sid``, ``assistant_id``, ``inbound_speaker``, ``outbound_speaker``,
    ``to_phone_number``, ``customer_phone_number``, ``call_type``)."""
    fmt = start.media_format
    if not fmt.supported():
        raise InvalidMessage(
            f"mediaFormat {fmt.encoding}/{fmt.sample_rate}/{fmt.channels} is not supported;"
            " only audio/x-mulaw/8000/1"
        )
    params = start.custom_parameters
    speakers: dict[str, str] = {}
    for track in dict.fromkeys(start.tracks):
        speaker = params.get(f"{track}_speaker", _DEFAULT_SPEAKERS[track])
        if speaker not in SPEAKERS:
            raise InvalidMessage(f"{track}_speaker must be 'user' or 'assistant'")
        speakers[track] = speaker
    call_sid = params.get("call_sid") or start.call_sid
    if not valid_call_sid(call_sid):
        raise InvalidMessage("start.callSid (or the call_sid parameter) is not a valid call SID")
    assistant = params.get("assistant_id")
    try:
        call = CreateCall.model_validate(
            {
                "call_sid": call_sid,
                "assistant_id": int(assistant) if assistant is not None else None,
                "to_phone_number": params.get("to_phone_number"),
                "customer_phone_number": params.get("customer_phone_number"),
                "call_type": params.get("call_type", "inbound"),
            }
        )
    except (ValueError, ValidationError):
        raise InvalidMessage(
            "custom parameters: assistant_id must be an id; to_phone_number and"
            " customer_phone_number at most 32 characters; call_type inbound, outbound or web"
        ) from None
    return StreamRequest(start.stream_sid, tuple(speakers), speakers, call)


@dataclass(slots=True)
class _Track:
    speech: SpeechTrack
    placement: Placement = field(default_factory=Placement)
    failed: bool = False


class MediaStream:
    """One media stream being transcribed into its call."""

    def __init__(self, calls: CallService, call: Call, request: StreamRequest) -> None:
        self.call = call
        self.request = request
        self.engine = ""
        #: Seconds from the call's start to the stream's (segment times are the call's).
        self.offset = 0.0
        #: Why the stream has nothing left to do (the call ended elsewhere, its
        #: assistant's transcription was switched off), once that happened.
        self.stopped: CallEnded | TranscriptionDisabled | None = None
        #: Whether this stream created its call (else it attached to one).
        self.created_call = False
        #: Set once the stream's last finals are stored (or given up).
        self.finished = asyncio.Event()
        #: The stream's name among its call's cluster-wide slots (unique even if a
        #: client repeats a stream SID).
        self.member = f"media:{request.stream_sid}:{secrets.token_hex(4)}"
        self.finals = 0
        self.partials = 0
        self._calls = calls
        self._tracks: dict[str, _Track] = {}
        self._partial_shown: set[str] = set()
        self._began = time.monotonic()
        self.label = f"media stream {request.stream_sid} of call {call.call_sid}"

    def sink(self, track: str) -> OnSegment:
        speaker = self.request.speakers[track]
        prefix = f"{self.request.stream_sid}:{_SHORT[track]}:"

        async def on_segment(segment: Segment) -> None:
            await self._store(segment, track, speaker, prefix + str(segment.index))

        return on_segment

    def attach(self, engine: str, tracks: dict[str, SpeechTrack]) -> None:
        self.engine = engine
        self._tracks = {name: _Track(track) for name, track in tracks.items()}

    def feed(self, track: str, timestamp_ms: int, audio: bytes) -> None:
        """Place ``audio`` by its timestamp and hand it to the track's engine. Media
        of a track the stream did not announce is refused."""
        state = self._tracks.get(track)
        if state is None:
            raise InvalidMessage(f"media of track {track!r}, which start did not announce")
        placed = state.placement.place(timestamp_ms, audio)
        if state.failed or not placed:
            return
        try:
            state.speech.feed(placed)
        except SpeechFailed as exc:
            state.failed = True
            log.warning("%s: the %s track's engine failed: %s", self.label, track, exc)

    def elapsed(self) -> float:
        """Seconds since the stream began."""
        return time.monotonic() - self._began

    def heard(self) -> float:
        """Seconds of audio handed to the engine on the busiest track. Skipped gaps
        do not count: they cost nothing, so a timestamp far ahead is not paced (and
        cannot park the stream)."""
        fed = max((t.placement.fed for t in self._tracks.values()), default=0)
        return fed / BYTES_PER_SECOND

    async def ready(self) -> None:
        """Wait until every track can take more audio (``SpeechTrack.ready``)."""
        for track in self._tracks.values():
            if not track.failed:
                await track.speech.ready()

    async def finish(self, within: float) -> None:
        """The stream stopped (or its socket closed): every track's last utterance
        gets its final, for at most ``within`` seconds. Never raises: a track
        whose engine fails or hangs is logged and aborted."""
        try:
            async with asyncio.timeout(within):
                results = await asyncio.gather(
                    *(t.speech.finish() for t in self._tracks.values()), return_exceptions=True
                )
        except TimeoutError:
            log.warning("%s: the engine took over %.0f s to finish; cut short", self.label, within)
            results = []
        for (name, _), result in zip(self._tracks.items(), results, strict=False):
            if isinstance(result, SpeechFailed):
                log.warning("%s: the %s track failed at the end: %s", self.label, name, result)
            elif isinstance(result, BaseException):
                log.error("%s: the %s track failed to finish", self.label, name, exc_info=result)
        await self.abort()  # whatever did not finish cleanly lets go of its engine

    async def abort(self) -> None:
        """Let go of every track's engine (one that fails to let go is logged)."""
        for name, track in self._tracks.items():
            try:
                await track.speech.abort()
            except Exception:
                log.exception("%s: the %s track failed to abort", self.label, name)

    async def _store(self, segment: Segment, track: str, speaker: str, segment_id: str) -> None:
        if self.stopped is not None:
            return
        if not segment.text and (segment.is_final and segment_id not in self._partial_shown):
            return  # nothing heard and nothing shown: an empty final would say nothing
        placement = self._tracks[track].placement
        start = placement.media_seconds(segment.start)
        end = max(start, placement.media_seconds(segment.end, end=True))
        item = Transcript(
            content=segment.text,
            speaker=speaker,  # type: ignore[arg-type]  # one of SPEAKERS
            is_final=segment.is_final,
            confidence=segment.confidence,
            segment_start=round(self.offset + start, 3),
            segment_end=round(self.offset + end, 3),
            segment_id=segment_id,
        )
        try:
            await _retrying(
                lambda: self._calls.append_transcripts(self.call, [item]),
                f"{self.label}: {segment_id}",
                # A partial is soon replaced: it is not worth a retry; a final is.
                within=FINAL_RETRY_SECONDS if segment.is_final else 0.0,
            )
        except (CallEnded, TranscriptionDisabled) as exc:
            self.stopped = exc
            log.info("%s: stops transcribing (%s)", self.label, exc.code)
            return
        except (StorageUnavailable, BrokerUnreachable) as exc:
            level = logging.WARNING if segment.is_final else logging.DEBUG
            log.log(level, "%s: %s dropped (%s)", self.label, segment_id, exc.code)
            return
        if segment.is_final:
            self.finals += 1
            self._partial_shown.discard(segment_id)
        else:
            self.partials += 1
            self._partial_shown.add(segment_id)


class MediaStreamService:
    """Starts and ends media streams: resolves the call, opens the tracks on an
    engine, and completes a stream-made call when its last stream is over."""

    def __init__(
        self,
        calls: CallService,
        assistants: AssistantService,
        router: SpeechRouter,
        cluster: Cluster,
        *,
        end_grace: float,
    ) -> None:
        self._calls = calls
        self._assistants = assistants
        self._router = router
        self._cluster = cluster
        self._end_grace = end_grace
        self._closing = False
        #: Streams begun and not yet ended on this node, and the tasks ending them.
        self._live: set[MediaStream] = set()
        self._ending: set[asyncio.Task[None]] = set()
        #: Set when a stream of a call (by its slot key) begins on this node.
        self._began: dict[str, asyncio.Event] = {}

    async def begin(self, org: OrgSpeech, request: StreamRequest) -> MediaStream:
        """The stream, its tracks open. Refuses a call with ``MAX_STREAMS_PER_CALL``
        streams, an ended call, an assistant with transcription off, or no engine
        (``TranscriptionUnavailable``, ``SpeechNotConfigured``); a refused stream
        creates no call."""
        call_sid = request.call.call_sid
        slot = _slot(org.org_id, call_sid)
        stream = MediaStream(self._calls, _draft(org.org_id, request), request)
        # The slot first: a stream ending meanwhile sees this one and leaves the call open.
        if not await self._cluster.acquire(slot, MAX_STREAMS_PER_CALL, stream.member):
            raise ConnectionLimit(f"Call {call_sid} has {MAX_STREAMS_PER_CALL} media streams")
        try:
            await self._open(org, request, stream)
        except BaseException:
            await self._cluster.release(slot, stream.member)
            raise
        self._live.add(stream)
        self._began.pop(slot, asyncio.Event()).set()
        log.info(
            "%s (organization %d): tracks %s on the %s engine",
            stream.label,
            org.org_id,
            ",".join(request.tracks),
            stream.engine,
        )
        return stream

    async def _open(self, org: OrgSpeech, request: StreamRequest, stream: MediaStream) -> None:
        call_sid = request.call.call_sid
        try:
            existing: Call | None = await self._calls.get(org.org_id, call_sid)
        except NotFound:
            existing = None
        if existing is not None and existing.status in TERMINAL_STATUSES:
            raise CallEnded(f"Call {call_sid} has ended")
        assistant_id = existing.assistant_id if existing else request.call.assistant_id
        assistant = await self._assistants.get(org.org_id, assistant_id)
        if not assistant.transcription_enabled:
            raise TranscriptionDisabled(
                f"Transcription is switched off for assistant {assistant.id}"
            )
        opened = await self._router.open(
            org, assistant, {t: stream.sink(t) for t in request.tracks}, stream.label
        )
        stream.attach(opened.engine, opened.tracks)
        try:
            await self._resolve(org, request, stream, existing)
        except BaseException:
            await stream.abort()
            raise

    async def _resolve(
        self, org: OrgSpeech, request: StreamRequest, stream: MediaStream, existing: Call | None
    ) -> None:
        """Create the call, or attach to it (moving it to in progress)."""
        if existing is None:
            try:
                stream.call = await self._calls.create(
                    org.org_id, request.call, started_at=request.started_at, metadata=SOURCE
                )
                stream.created_call = True
                return
            except Conflict:  # another stream of this call created it first
                existing = await self._calls.get(org.org_id, request.call.call_sid)
        stream.call = existing
        stream.offset = max(0.0, (request.started_at - existing.started_at) / 1000)
        if existing.status in (CallStatus.QUEUED, CallStatus.RINGING):
            await self._calls.set_status(existing, CallStatus.IN_PROGRESS, {})

    def end(self, stream: MediaStream, *, within: float, reason: str) -> asyncio.Task[None]:
        """End ``stream`` in a task of its own, which outlives a cancelled handler and
        which :meth:`close` waits for: its last finals (``stream.finished`` is set
        then), and the call if it is the call's last stream. ``reason`` goes in the
        completed call's metadata."""
        task = asyncio.get_running_loop().create_task(self._end(stream, within, reason))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)
        return task

    async def _end(self, stream: MediaStream, within: float, reason: str) -> None:
        slot = _slot(stream.call.org_id, stream.call.call_sid)
        try:
            await stream.finish(within)
            log.info(
                "%s ended: %d finals, %d partials", stream.label, stream.finals, stream.partials
            )
        except Exception:
            log.exception("%s: finishing the stream failed", stream.label)
        finally:
            stream.finished.set()
            await self._cluster.release(slot, stream.member)
        try:
            if not isinstance(stream.stopped, CallEnded) and await self._last_stream(stream):
                await _retrying(
                    lambda: self._complete(stream, reason), f"{stream.label}: completing"
                )
        except Exception:
            log.exception("%s: completing its call failed", stream.label)
        finally:
            self._live.discard(stream)

    async def _last_stream(self, stream: MediaStream) -> bool:
        """Whether the call was made by a media stream and no stream of it is left,
        after ``end_grace`` seconds for a new one (a stream stopped and started
        again) to begin."""
        if not stream.created_call:
            opening = await _retrying(
                lambda: self._calls.opening_metadata(stream.call), f"{stream.label}: reading"
            )
            if opening.get("source") != SOURCE["source"]:
                return False  # created over REST: REST ends it
        slot = _slot(stream.call.org_id, stream.call.call_sid)
        if not self._closing:
            began = self._began.setdefault(slot, asyncio.Event())
            try:
                await asyncio.wait_for(began.wait(), self._end_grace)
                if not self._closing:
                    return False  # a new stream of the call began here: it ends the call
            except TimeoutError:
                pass
            finally:
                if self._began.get(slot) is began and not began.is_set():
                    del self._began[slot]
        probe = f"probe:{stream.member}"
        alone = await self._cluster.acquire(slot, 1, probe)  # 1: no other holder anywhere
        if alone:
            await self._cluster.release(slot, probe)
        return alone

    async def _complete(self, stream: MediaStream, reason: str) -> None:
        with contextlib.suppress(CallEnded):  # ended meanwhile, over REST
            await self._calls.set_status(
                stream.call, CallStatus.COMPLETED, {**SOURCE, "ended_by": reason}
            )

    async def close(self, within: float) -> None:
        """Wait (at most ``within`` seconds) for the streams being ended (skipping
        their grace: nothing new begins now), then abort what is left; the engines
        and storage close after this returns."""
        self._closing = True
        for began in self._began.values():
            began.set()  # no grace while stopping (the waiters see _closing)
        if self._ending:
            await asyncio.wait(set(self._ending), timeout=within)
        for stream in list(self._live):
            await stream.abort()
        pending = list(self._ending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _retrying(
    operation: Callable[[], Awaitable[T]], what: str, within: float = FINAL_RETRY_SECONDS
) -> T:
    """``operation``, tried again while storage or the broker is briefly unavailable,
    for ``within`` seconds; then the outage's error is raised."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await operation()
        except (StorageUnavailable, BrokerUnreachable) as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("%s: %s; retrying", what, exc.code)
            await asyncio.sleep(_RETRY_PAUSE)  # retry pacing while storage recovers


def _slot(org_id: int, call_sid: str) -> str:
    """The cluster-wide slots of a call's media streams."""
    return f"media:{org_id}:{call_sid}"


def _draft(org_id: int, request: StreamRequest) -> Call:
    """A stand-in for the call until it is created (it names the stream in logs)."""
    return Call(
        id=0,
        org_id=org_id,
        assistant_id=request.call.assistant_id or 0,
        call_sid=request.call.call_sid,
        status=CallStatus.IN_PROGRESS,
        to_phone_number=None,
        customer_phone_number=None,
        call_type=None,
        started_at=request.started_at,
        ended_at=None,
    )
