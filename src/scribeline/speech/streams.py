"""Media streams: the call a stream transcribes, its tracks and their segments.

A stream names its call by Twilio's ``callSid`` (or a ``call_sid`` custom
parameter). If the organization has no such call yet, the stream creates it
and ends it when the stream stops; a call created over REST is attached to,
and whoever drives it over REST ends it. Each track's segments become
transcript events of the call, with ``segment_id`` ``{streamSid}:{in|out}:{n}``
(partials replaced by their final) and times in seconds from the call's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from scribeline.domain import Assistant, Call
from scribeline.errors import (
    BrokerUnreachable,
    CallEnded,
    Conflict,
    InvalidMessage,
    NotFound,
    StorageUnavailable,
    TranscriptionDisabled,
)
from scribeline.events import TERMINAL_STATUSES, CallStatus, now_ms
from scribeline.ingest.assistants import AssistantService
from scribeline.ingest.calls import CallService
from scribeline.ingest.models import CreateCall, Transcript, valid_call_sid
from scribeline.speech.engine import OnSegment, Segment, SpeechFailed, SpeechTrack
from scribeline.speech.placement import Placement
from scribeline.speech.router import SpeechRouter
from scribeline.speech.settings import OrgSpeech
from scribeline.speech.twilio import Start

__all__ = ["MediaStream", "MediaStreamService", "StreamRequest", "parse_start"]

log = logging.getLogger(__name__)

SPEAKERS = ("user", "assistant")
_DEFAULT_SPEAKERS = {"inbound": "user", "outbound": "assistant"}
_SHORT = {"inbound": "in", "outbound": "out"}

#: Seconds a final keeps being retried while storage or the broker is unavailable.
FINAL_RETRY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a ``start`` message asks for, validated."""

    stream_sid: str
    tracks: tuple[str, ...]
    speakers: dict[str, str]
    call: CreateCall


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

    def __init__(
        self,
        calls: CallService,
        call: Call,
        request: StreamRequest,
        *,
        owns_call: bool,
        offset: float,
    ) -> None:
        self.call = call
        self.request = request
        self.engine = ""
        #: Whether the stream ends the call when it stops (it created the call).
        self.owns_call = owns_call
        #: Why the stream has nothing left to do (the call ended elsewhere, its
        #: assistant's transcription was switched off), once that happened.
        self.stopped: CallEnded | TranscriptionDisabled | None = None
        self.finals = 0
        self.partials = 0
        #: Seconds from the call's start to the stream's (segment times are the call's).
        self.offset = offset
        self._calls = calls
        self._tracks: dict[str, _Track] = {}
        self._partial_shown: set[str] = set()
        self.label = f"media stream {request.stream_sid} of call {call.call_sid}"

    def sink(self, track: str) -> OnSegment:
        speaker = self.request.speakers[track]
        prefix = f"{self.request.stream_sid}:{_SHORT[track]}:"

        async def on_segment(segment: Segment) -> None:
            await self._store(segment, speaker, prefix + str(segment.index))

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

    async def ready(self) -> None:
        """Wait until every track can take more audio (backpressure: see
        ``SpeechTrack.ready``); a Twilio stream, at real time, never waits."""
        for track in self._tracks.values():
            if not track.failed:
                await track.speech.ready()

    async def finish(self, within: float) -> None:
        """The stream stopped (or its socket closed): every track's last utterance
        gets its final, for at most ``within`` seconds; then a call this stream
        created is completed."""
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*(self._finish(n, t) for n, t in self._tracks.items()))
        except TimeoutError:
            log.warning("%s: the engine took over %.0f s to finish; cut short", self.label, within)
            await self.abort()
        if self.owns_call and not isinstance(self.stopped, CallEnded):
            with contextlib.suppress(CallEnded):
                await self._calls.set_status(self.call, CallStatus.COMPLETED, {})

    async def _finish(self, name: str, track: _Track) -> None:
        try:
            await track.speech.finish()
        except SpeechFailed as exc:
            log.warning("%s: the %s track's engine failed at the end: %s", self.label, name, exc)

    async def abort(self) -> None:
        for track in self._tracks.values():
            await track.speech.abort()

    async def _store(self, segment: Segment, speaker: str, segment_id: str) -> None:
        if self.stopped is not None:
            return
        if not segment.text and (segment.is_final and segment_id not in self._partial_shown):
            return  # nothing heard and nothing shown: an empty final would say nothing
        item = Transcript(
            content=segment.text,
            speaker=speaker,  # type: ignore[arg-type]  # one of SPEAKERS
            is_final=segment.is_final,
            confidence=segment.confidence,
            segment_start=round(self.offset + segment.start, 3),
            segment_end=round(self.offset + max(segment.end, segment.start), 3),
            segment_id=segment_id,
        )
        deadline = time.monotonic() + (FINAL_RETRY_SECONDS if segment.is_final else 0.0)
        while True:
            try:
                await self._calls.append_transcripts(self.call, [item])
                break
            except (CallEnded, TranscriptionDisabled) as exc:
                self.stopped = exc
                log.info("%s: stops transcribing (%s)", self.label, exc.code)
                return
            except (StorageUnavailable, BrokerUnreachable) as exc:
                if time.monotonic() >= deadline:
                    log.warning("%s: %s dropped (%s)", self.label, segment_id, exc.code)
                    return
                await asyncio.sleep(0.5)  # retry pacing while storage recovers
        if segment.is_final:
            self.finals += 1
            self._partial_shown.discard(segment_id)
        else:
            self.partials += 1
            self._partial_shown.add(segment_id)


class MediaStreamService:
    """Starts media streams: resolves the call, opens the tracks on an engine."""

    def __init__(
        self, calls: CallService, assistants: AssistantService, router: SpeechRouter
    ) -> None:
        self._calls = calls
        self._assistants = assistants
        self._router = router

    async def begin(self, org: OrgSpeech, request: StreamRequest) -> MediaStream:
        """The stream, its tracks open. Refuses an ended call, an assistant with
        transcription off, or no engine (``TranscriptionUnavailable``,
        ``SpeechNotConfigured``); a refused stream creates no call."""
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
        call = existing or _draft(org.org_id, assistant, request)
        stream = MediaStream(self._calls, call, request, owns_call=False, offset=0.0)
        opened = await self._router.open(
            org, assistant, {t: stream.sink(t) for t in request.tracks}, stream.label
        )
        stream.attach(opened.engine, opened.tracks)
        try:
            await self._resolve(org, request, stream, existing)
        except BaseException:
            await stream.abort()
            raise
        log.info(
            "%s (organization %d): tracks %s on the %s engine",
            stream.label,
            org.org_id,
            ",".join(request.tracks),
            opened.engine,
        )
        return stream

    async def _resolve(
        self, org: OrgSpeech, request: StreamRequest, stream: MediaStream, existing: Call | None
    ) -> None:
        """Create the call, or attach to it (moving it to in progress)."""
        if existing is None:
            try:
                stream.call = await self._calls.create(org.org_id, request.call)
                stream.owns_call = True
                return
            except Conflict:  # another stream of this call created it first
                existing = await self._calls.get(org.org_id, request.call.call_sid)
        stream.call = existing
        stream.offset = max(0.0, (now_ms() - existing.started_at) / 1000)
        if existing.status in (CallStatus.QUEUED, CallStatus.RINGING):
            await self._calls.set_status(existing, CallStatus.IN_PROGRESS, {})


def _draft(org_id: int, assistant: Assistant, request: StreamRequest) -> Call:
    """A stand-in for the call until it is created (it names the stream in logs)."""
    return Call(
        id=0,
        org_id=org_id,
        assistant_id=assistant.id,
        call_sid=request.call.call_sid,
        status=CallStatus.IN_PROGRESS,
        to_phone_number=None,
        customer_phone_number=None,
        call_type=None,
        started_at=now_ms(),
        ended_at=None,
    )
