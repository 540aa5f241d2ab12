"""Speech: the local engine (faster-whisper tiny.en) on the demo call, fed at real time.

Each "call" is the recorded two-track demo call (``scribeline.demo.recording``,
espeak voices through a phone path, 29.8 s + 1 s of silence, 7 lines), its two tracks fed to one
:class:`LocalEngine` as 20 ms mu-law messages on a real-time schedule, in this
process, with no server. Calls of one run are rotated to start at different
pauses of the conversation, so their utterances do not all end at once.

Measured per run (wall clock):

* **end of speech -> final**: the time a line's final reached ``on_segment``
  minus the time the line's last loud sample (the manifest's ``end``) was fed;
* **CPU s per audio s**: this process's CPU time (all threads) over the run,
  divided by the seconds of track audio fed;
* **WER** of the finals against the manifest's text (tests/speech/wer.py).

Then a **sweep**: more concurrent calls (2 more per step, 2 tracks each) until
p90 exceeds 3 s, a line gets no final, or the time budget runs out. Capacity is
the most tracks whose p90 stayed within 3 s, per decode worker (one worker per
core by default). The admission limit is lifted for the bench. The machine may
be shared: the load average before each run is reported with it.

    .venv/bin/python -m bench.speech                     # 1, 2, 4 calls + sweep (~5 min)
    .venv/bin/python -m bench.speech --calls 1 --sweep-seconds 0
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import Result, base_parser, emit, print_params
from scribeline.config import Settings
from scribeline.demo.recording import Recording, load_call
from scribeline.speech.engine import Segment
from scribeline.speech.local import LocalEngine, missing_extra

__all__ = ["run"]

FRAME = 160  # 20 ms of 8 kHz mu-law
P90_LIMIT = 3.0


@dataclass
class _Line:
    track: str
    start: float  # seconds of the (rotated) track
    end: float
    text: str
    final_at: float | None = None  # wall clock (perf_counter) of its final


@dataclass
class _Call:
    tracks: dict[str, bytes]
    lines: list[_Line]
    finals: dict[str, list[Segment]] = field(default_factory=dict)


def _rotation_points(call: Recording) -> list[float]:
    """Mid-points of the pauses between lines: where a rotated call may begin."""
    spans = sorted((u.start, u.end) for u in call.utterances)
    points = [0.0]
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start > end:
            points.append(round((end + start) / 2 * 50) / 50)  # on a 20 ms frame
    return points


def _rotated(call: Recording, offset: float) -> _Call:
    """The call started ``offset`` seconds in; what was cut off follows after 1 s of silence
    (the recording ends 0.3 s after its last word and starts 0.3 s before its first)."""
    cut = int(offset * 8000)
    gap = b"\xff" * 8000
    tracks = {name: audio[cut:] + gap + audio[:cut] for name, audio in call.tracks.items()}
    lines = []
    for u in call.utterances:
        shift = -offset if u.start >= offset else call.duration + 1.0 - offset
        lines.append(_Line(u.track, u.start + shift, u.end + shift, u.text))
    lines.sort(key=lambda line: line.start)
    return _Call(tracks, lines)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _one_run(
    recording: Recording, model: Any, calls: int, workers: int, partials: bool
) -> dict[str, Any]:
    """``calls`` two-track calls at once, fed at real time; latency, CPU and WER."""
    settings = Settings(
        speech_workers=workers,
        speech_max_local_tracks=100_000,
        speech_partial_interval=1.5 if partials else 1e9,
    )
    engine = LocalEngine(settings, model=model)
    await engine.load()
    points = _rotation_points(recording)
    runs = [_rotated(recording, points[i % len(points)]) for i in range(calls)]
    tracks = []
    for n, c in enumerate(runs):
        for name in c.tracks:
            c.finals[name] = []

            async def on_segment(segment: Segment, c: _Call = c, name: str = name) -> None:
                if segment.is_final:
                    c.finals[name].append(segment)
                    now = time.perf_counter()
                    for line in c.lines:  # the lines this final covers
                        overlap = line.start < segment.end and line.end > segment.start
                        if line.track == name and overlap:
                            line.final_at = now

            tracks.append((c, name, await engine.open_track(on_segment, f"call{n}-{name}")))
    frames = len(runs[0].tracks["inbound"]) // FRAME
    load = os.getloadavg()[0]
    cpu0, began = time.process_time(), time.perf_counter()
    lag = depth = 0.0
    for k in range(frames):
        due = began + k * 0.02
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        lag = max(lag, time.perf_counter() - due)
        for c, name, track in tracks:
            track.feed(c.tracks[name][k * FRAME : (k + 1) * FRAME])
        depth = max(depth, engine.queue_depth)
    await asyncio.gather(*(track.finish() for _, _, track in tracks))
    cpu = time.process_time() - cpu0
    latencies, missed = [], 0
    errors = words = 0
    from tests.speech.wer import word_errors

    for c in runs:
        for line in c.lines:
            if line.final_at is None:
                missed += 1
            else:
                latencies.append(line.final_at - (began + line.end))
        for name in c.tracks:
            said = " ".join(line.text for line in c.lines if line.track == name)
            heard = " ".join(s.text for s in c.finals[name])
            e = word_errors(said, heard)
            errors += e.substitutions + e.deletions + e.insertions
            words += e.reference_words
    audio_seconds = 2 * calls * frames * 0.02
    result = {
        "calls": calls,
        "tracks": 2 * calls,
        "workers": engine.workers,
        "load_avg_before": round(load, 2),
        "p50_s": round(_percentile(latencies, 50), 2),
        "p90_s": round(_percentile(latencies, 90), 2),
        "max_s": round(max(latencies), 2) if latencies else float("nan"),
        "lines": len(latencies) + missed,
        "missed": missed,
        "cpu_s_per_audio_s": round(cpu / audio_seconds, 3),
        "wer": round(errors / words, 3),
        "decodes": engine.decodes,
        "partial_decodes": engine.partial_decodes,
        "partials_dropped": engine.dropped_partials,
        "merged_finals": engine.merged_finals,
        "decode_wall_s_mean": round(
            engine.decode_seconds / max(1, engine.decodes + engine.partial_decodes), 2
        ),
        "max_queue_depth": int(depth),
        "feeder_max_lag_ms": round(lag * 1000, 1),
    }
    await engine.close()
    return result


async def run(
    calls: tuple[int, ...] = (1, 2, 4),
    sweep_seconds: float = 300.0,
    workers: int = 0,
    partials: bool = True,
) -> Result:
    """The runs of ``calls``, then the capacity sweep within ``sweep_seconds``."""
    params = {
        "calls": list(calls),
        "sweep_seconds": sweep_seconds,
        "workers": workers or os.cpu_count(),
        "partials": partials,
    }
    print_params("speech", params)
    problem = missing_extra()
    if problem:
        return {"scenario": "speech", "params": params, "results": {}, "error": problem}
    from scribeline.speech.whisper import WhisperModel

    recording = load_call()
    model = await asyncio.to_thread(WhisperModel.load, None, workers or os.cpu_count() or 1)
    runs = []
    for n in calls:
        runs.append(await _one_run(recording, model, n, workers, partials))
        print(_row(runs[-1]), flush=True)
    sweep: list[dict[str, Any]] = []
    budget_end = time.monotonic() + sweep_seconds
    n = max(calls) + 2 if calls else 2
    last_ok = max((r["tracks"] for r in runs if _ok(r)), default=0)
    while sweep_seconds > 0 and time.monotonic() + recording.duration + 5 < budget_end:
        sweep.append(await _one_run(recording, model, n, workers, partials))
        print(_row(sweep[-1]), flush=True)
        if not _ok(sweep[-1]):
            break
        last_ok = max(last_ok, sweep[-1]["tracks"])
        n += 2
    cores = runs[0]["workers"] if runs else workers or os.cpu_count() or 1
    ended = "p90 over 3 s" if sweep and not _ok(sweep[-1]) else "the time budget"
    results: dict[str, Any] = {
        **{f"calls_{r['calls']}": r for r in runs},
        "sweep": sweep,
        "tracks_within_3s": last_ok,
        "tracks_per_core_within_3s": round(last_ok / cores, 1),
        "sweep_ended_by": ended if sweep_seconds > 0 else "no sweep",
        "wer_one_call": runs[0]["wer"] if runs else None,
    }
    return {"scenario": "speech", "params": params, "results": results}


def _ok(r: dict[str, Any]) -> bool:
    return bool(r["p90_s"] <= P90_LIMIT and r["missed"] == 0)


def _row(r: dict[str, Any]) -> str:
    return (
        f"  {r['calls']:>2} calls {r['tracks']:>3} tracks: final p50 {r['p50_s']:.2f} s"
        f" p90 {r['p90_s']:.2f} s max {r['max_s']:.2f} s, missed {r['missed']}/{r['lines']},"
        f" CPU {r['cpu_s_per_audio_s']:.3f} s/audio s, WER {r['wer']:.1%},"
        f" decodes {r['decodes']} (+{r['partial_decodes']} partial), queue max"
        f" {r['max_queue_depth']}, load {r['load_avg_before']}"
    )


def summary_table(result: Result) -> str:
    """The runs as a short text table."""
    r = result.get("results", {})
    rows = [v for k, v in r.items() if k.startswith("calls_")] + list(r.get("sweep", []))
    head = "calls tracks  p50 s  p90 s  max s  missed  CPU s/audio s  WER    decodes  load"
    lines = [head]
    for x in rows:
        lines.append(
            f"{x['calls']:>5} {x['tracks']:>6} {x['p50_s']:>6.2f} {x['p90_s']:>6.2f}"
            f" {x['max_s']:>6.2f} {x['missed']:>7} {x['cpu_s_per_audio_s']:>14.3f}"
            f" {x['wer']:>6.1%} {x['decodes']:>8} {x['load_avg_before']:>5}"
        )
    lines.append(
        f"tracks within p90 <= 3 s: {r.get('tracks_within_3s')}"
        f" ({r.get('tracks_per_core_within_3s')} per core; sweep ended by"
        f" {r.get('sweep_ended_by')})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--calls", default="1,2,4", help="concurrent calls per measured run")
    parser.add_argument("--sweep-seconds", type=float, default=300.0, help="0: no sweep")
    parser.add_argument("--workers", type=int, default=0, help="decode workers (0: one per core)")
    parser.add_argument("--no-partials", action="store_true", help="finals only")
    args = parser.parse_args()
    calls = tuple(int(c) for c in args.calls.split(",") if c.strip())
    result = asyncio.run(run(calls, args.sweep_seconds, args.workers, not args.no_partials))
    print(summary_table(result))
    emit(result, args.json)


if __name__ == "__main__":
    main()
