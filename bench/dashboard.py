"""dashboard: the supervisor dashboard in Chromium, on an organization with many live calls.

A fresh server gets ``calls`` live calls; Debian's Chromium (driven by
Playwright) signs in with a link from ``scribeline dashboard`` and shows the
live calls view with every call in the grid. Transcripts then go round-robin
over the calls at a fixed total rate, each on its call's producer WebSocket
(``/v1/ingest/{sid}``, pipelined). Each transcript's content starts with its
publish time (``time.time_ns()``) and its index; a MutationObserver added to
the page (``page.evaluate``) notes when each index's text first enters the
DOM (the page applies events in a ``requestAnimationFrame``, so that is the
frame that paints it), on the same machine clock. Measured: publish -> text
on screen p50/p99/max, events rendered vs sent, the page's CPU (the renderer
process's CPU seconds per wall second, psutil, and the page's main-thread
task time from CDP ``Performance.getMetrics``), Chromium's CPU in all, the
server's CPU, and the page's frame intervals.

Each phase has its own server and browser. ``--phases 0,3,3b``: finals only;
then every final preceded by 3 interim results of its segment, a call's lines
spread out (as a speech engine sends them); then the same with each segment's
lines sent back to back (within one frame). The page may coalesce interims per
call per frame, never finals: coalescing shows as interims rendered < sent.
A final replaced by a newer line of its call before the next frame is counted
apart from one that never showed.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psutil  # type: ignore[import-untyped]

from bench.common import Api, Result, base_parser, chosen, emit, exit_status, print_params
from bench.live import Published, pace
from bench.metrics import CpuMeter, latency_summary
from bench.producers import Producer, open_producers, wait_acked
from bench.server import HOST, Server
from bench.subscribers import stamp_content
from bench.workers import raise_nofile, run_async
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS

__all__ = ["main", "run"]

LINK_RE = re.compile(r"(https?://\S+/dashboard/#code=scd_[A-Za-z0-9_-]+)")
CDP_METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")

# Notes, for each transcript index, the first time its stamp is in the DOM, and keeps
# the page's frame intervals. Stamps: "<publish ns> #<index> ..." (bench.subscribers).
_OBSERVE = """() => {
  const clock = () => performance.timeOrigin + performance.now();
  const stamp = /(\\d{19}) #(\\d+)/g;
  const seen = new Map();
  const note = (text, now) => {
    if (!text) return;
    for (const m of text.matchAll(stamp)) {
      if (!seen.has(m[2])) seen.set(m[2], [now, m[1]]);
    }
  };
  const observer = new MutationObserver((records) => {
    const now = clock();
    for (const r of records) {
      if (r.type === "characterData") note(r.target.data, now);
      else for (const n of r.addedNodes) note(n.textContent, now);
    }
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  const frames = [];
  let last = null;
  let running = true;
  const tick = (t) => {
    if (last !== null) frames.push(t - last);
    last = t;
    if (running) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  window.__bench = {
    seen,
    frames,
    stop: () => { running = false; observer.disconnect(); },
    count: () => seen.size,
  };
  return clock();
}"""
# Added before the page loads: notes when each stamped transcript's WebSocket message
# is dispatched (this listener is the socket's first), once _OBSERVE has armed it.
_ARRIVALS = """(() => {
  const Native = window.WebSocket;
  const stamp = /(\\d{19}) #(\\d+)/g;
  window.__arrivals = new Map();
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (!window.__bench || typeof event.data !== "string") return;
        const now = performance.timeOrigin + performance.now();
        for (const m of event.data.matchAll(stamp)) {
          if (!window.__arrivals.has(m[2])) window.__arrivals.set(m[2], now);
        }
      });
    }
  };
})();"""
_COLLECT = """() => {
  window.__bench.stop();
  return {
    seen: Array.from(window.__bench.seen),
    arrived: Array.from(window.__arrivals),
    frames: window.__bench.frames,
  };
}"""


def _browser_missing() -> bool:
    return not CHROMIUM.exists()


def _chromium_tree() -> list[psutil.Process]:
    """Chromium's processes (browser, renderers, utilities): descendants of this process."""
    out = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "chrom" in child.name():
                out.append(child)
        except psutil.Error:
            continue
    return out


def _is_renderer(proc: psutil.Process) -> bool:
    try:
        return "--type=renderer" in proc.cmdline()
    except psutil.Error:
        return False


def _cpu(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += float(t.user + t.system)
    return total


@dataclass(frozen=True, slots=True)
class Schedule:
    """Which call each transcript index goes to and what it is.

    ``interims`` interim results precede each final of a segment. Spread: index
    ``i`` goes to call ``i % calls`` (a call's lines are ``calls`` events apart).
    ``burst``: a segment's interims and final go out back to back to one call (1 ms
    apart at 1,000/s, so within one frame: what the page may coalesce).
    """

    calls: int
    interims: int = 0
    burst: bool = False

    @property
    def name(self) -> str:
        if self.interims == 0:
            return "finals_only"
        return f"interims_{self.interims}" + ("_burst" if self.burst else "")

    def place(self, index: int) -> tuple[int, int, int]:
        """(call, segment number within the call, step within the segment)."""
        size = self.interims + 1
        if self.burst:
            group, step = divmod(index, size)
            return group % self.calls, group // self.calls, step
        turn, step = divmod(index // self.calls, size)
        return index % self.calls, turn, step

    def is_final(self, index: int) -> bool:
        return self.place(index)[2] == self.interims

    def payload(self, index: int) -> bytes:
        """Transcript ``index``, its content starting with its publish time and index."""
        _, turn, step = self.place(index)
        return orjson.dumps(
            {
                "content": f"{stamp_content(index)} {' '.join(['and then'] * (step + 1))}",
                "speaker": ("user", "assistant")[turn % 2],
                "is_final": step == self.interims,
                "segment_id": f"t{turn}",
            }
        )


async def _sign_in_link(server: Server) -> str:
    out = await asyncio.to_thread(
        server._admin, "dashboard", "--org", "bench", "--url", server.http
    )
    match = LINK_RE.search(out)
    if match is None:
        raise RuntimeError(f"scribeline dashboard printed no link: {out!r}")
    return match.group(1)


async def _phase(
    schedule: Schedule, rate: float, duration: float, keep_data: bool
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    calls = schedule.calls
    count = max(1, round(rate * duration))
    sids = [f"CAdash{i:05d}" for i in range(calls)]
    finals = {i for i in range(count) if schedule.is_final(i)}
    last_final = {schedule.place(i)[0]: i for i in sorted(finals)}
    with Server({}, keep_data) as server:
        async with Api(server.http, server.key) as api:
            gate = asyncio.Semaphore(32)

            async def create(sid: str) -> None:
                async with gate:
                    await api.post("/v1/calls", {"call_sid": sid, "status": "in-progress"})

            await asyncio.gather(*(create(sid) for sid in sids))
        link = await _sign_in_link(server)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            context = await browser.new_context(viewport={"width": 1280, "height": 720})
            await context.add_init_script(_ARRIVALS)
            page = await context.new_page()
            console_errors: list[str] = []
            page.on(
                "console",
                lambda m: console_errors.append(m.text) if m.type == "error" else None,
            )
            began = time.monotonic()
            await page.goto(link)
            await page.wait_for_selector('#connection[data-state="live"]', timeout=30_000)
            await page.wait_for_selector(f'#calls[data-count="{calls}"]', timeout=30_000)
            load_s = time.monotonic() - began
            cdp = await context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            asked = time.time() * 1000
            page_clock = await page.evaluate(_OBSERVE)
            clock_skew_ms = page_clock - (asked + time.time() * 1000) / 2

            published = Published()
            producers = await open_producers(HOST, server.port, server.key, sids, published, 100)
            tree = _chromium_tree()
            renderers = [p for p in tree if _is_renderer(p)]
            metrics_before = await cdp.send("Performance.getMetrics")
            renderer_before = [_cpu([r]) for r in renderers]
            tree_before = _cpu(tree)
            # Chromium and Playwright's driver are ours too, not contention: clients.
            helpers = psutil.Process(os.getpid()).children(recursive=True)
            meter = CpuMeter(server.pid, [os.getpid(), *(p.pid for p in helpers)])
            meter.start()
            try:

                def send(i: int) -> None:
                    producer: Producer = producers[schedule.place(i)[0]]
                    producer.send_many([schedule.payload(i)])

                published.late = await pace(count, rate, send)
                await wait_acked(producers, published, 60)
                # The last final of each call is its latest line: wait for those (10 s at most).
                try:
                    await page.wait_for_function(
                        "(ids) => ids.every((i) => window.__bench.seen.has(String(i)))",
                        arg=sorted(last_final.values()),
                        timeout=10_000,
                        polling=100,
                    )
                    drained = True
                except Exception:
                    drained = False
                window = meter.stop()
                metrics_after = await cdp.send("Performance.getMetrics")
                # The page's renderer is the busy one (others: the initial blank page, spares).
                renderer_cpu = max(
                    _cpu([r]) - before for r, before in zip(renderers, renderer_before, strict=True)
                )
                tree_cpu = _cpu(tree) - tree_before
            finally:
                for producer in producers:
                    if producer.ws is not None:
                        producer.ws.abort()
            collected = await page.evaluate(_COLLECT)
            rows = await page.locator("#calls-table tbody tr[data-call-sid]").count()
            await browser.close()
    return _summarize(
        schedule=schedule,
        count=count,
        finals=finals,
        published=published,
        collected=collected,
        window=window,
        cdp=(metrics_before, metrics_after),
        renderer_cpu=renderer_cpu,
        chromium_cpu=tree_cpu,
        renderers=len(renderers),
        extra={
            "page_load_to_all_rows_s": round(load_s, 2),
            "rows_shown": rows,
            "drained": drained,
            "page_clock_minus_python_clock_ms": round(clock_skew_ms, 3),
            "console_errors": console_errors[:5],
            "server_log": server.problems(),
        },
    )


def _summarize(
    *,
    schedule: Schedule,
    count: int,
    finals: set[int],
    published: Published,
    collected: dict[str, Any],
    window: Any,
    cdp: tuple[dict[str, Any], dict[str, Any]],
    renderer_cpu: float,
    chromium_cpu: float,
    renderers: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    sent_ns = _sent_times(collected["seen"])
    arrived = {int(index): float(at) for index, at in collected["arrived"]}
    final_us, interim_us, received_us, in_page_us = [], [], [], []
    for index, (on_screen_ms, publish_ns) in sent_ns.items():
        delay_us = (on_screen_ms * 1e6 - publish_ns) / 1000
        (final_us if index in finals else interim_us).append(delay_us)
        if index in finals and index in arrived:
            received_us.append((arrived[index] * 1e6 - publish_ns) / 1000)
            in_page_us.append((on_screen_ms - arrived[index]) * 1000)
    secs = window.seconds or math.nan
    before, after = ({m["name"]: m["value"] for m in c["metrics"]} for c in cdp)
    page_main = {
        f"{name}_per_s": round((after.get(name, 0) - before.get(name, 0)) / secs, 3)
        for name in CDP_METRICS
    }
    frames = sorted(collected["frames"])
    # A final not drawn because a later line of its call replaced it before the next
    # frame was never on screen to see; one with nothing later drawn is missing.
    newest: dict[int, int] = {}
    for index in sent_ns:
        call = schedule.place(index)[0]
        newest[call] = max(index, newest.get(call, -1))
    unrendered = [i for i in finals if i not in sent_ns]
    superseded = sum(newest.get(schedule.place(i)[0], -1) > i for i in unrendered)
    results: dict[str, Any] = {
        "events_sent": published.sent,
        "events_stored": published.acked,
        "finals_sent": len(finals),
        "finals_rendered": len(final_us),
        "finals_replaced_before_drawn": superseded,
        "finals_missing": len(unrendered) - superseded,
        "interims_sent": count - len(finals),
        "interims_rendered": len(interim_us),
        "latency_final": latency_summary(final_us),
        # Its parts: publish -> stored and acknowledged; publish -> the page's socket
        # dispatched the message; that dispatch -> text in the DOM (the page's own share).
        "stored_ack": latency_summary(published.ack_us),
        "final_publish_to_page_socket": latency_summary(received_us),
        "final_page_socket_to_dom": latency_summary(in_page_us),
        "events_at_page_socket": len(arrived),
        **({"latency_interim": latency_summary(interim_us)} if schedule.interims else {}),
        # CPU-seconds per wall second of the busiest renderer process (the page's).
        "page_renderer_cores": round(renderer_cpu / secs, 3),
        "page_main_thread": page_main,
        "chromium_cores_all_processes": round(chromium_cpu / secs, 3),
        "renderer_processes": renderers,
        "server_cores": round(window.server / secs, 3),
        "server_us_per_event": round(window.server / max(published.acked, 1) * 1e6, 1),
        "frames": {
            "count": len(frames),
            "p50_ms": round(frames[len(frames) // 2], 1) if frames else math.nan,
            "p99_ms": round(frames[int(len(frames) * 0.99)], 1) if frames else math.nan,
            "max_ms": round(frames[-1], 1) if frames else math.nan,
            "over_50ms": sum(f > 50 for f in frames),
        },
        "publish_errors": published.errors,
        "publisher_late_sends": published.late,
        "cpu": window.as_dict(),
        "cpu_warnings": window.warnings(),
        **extra,
    }
    return results


def _sent_times(seen: list[list[Any]]) -> dict[int, tuple[float, int]]:
    """index -> (first time in the DOM in ms, publish time in ns, read from its stamp)."""
    return {int(index): (float(at), int(stamp)) for index, (at, stamp) in seen}


def _schedules(calls: int, phases: Sequence[str]) -> list[Schedule]:
    """``0`` finals only, ``3`` three interims per final spread out, ``3b`` the same in
    bursts (see :class:`Schedule`)."""
    return [Schedule(calls, int(p.removesuffix("b")), p.endswith("b")) for p in phases]


#: The phases ``--phases`` knows: 0..9 interims per final, spread or in bursts (``b``).
PHASES = [f"{n}{b}" for n in range(10) for b in ("", "b")]


async def run(
    calls: int = 300,
    rate: float = 1000.0,
    duration: float = 20.0,
    phases: Sequence[str] = ("0", "3", "3b"),
    keep_data: bool = False,
) -> Result:
    raise_nofile()
    schedules = _schedules(calls, phases)
    params: dict[str, Any] = {
        "calls": calls,
        "rate_per_s": rate,
        "duration_s": duration,
        "publisher": f"producer WebSocket x{calls} (one per call), pipelined",
        "phases": ",".join(s.name for s in schedules),
        "browser": f"{CHROMIUM} headless 1280x720, live calls view",
    }
    print_params("dashboard", params)
    if _browser_missing():
        return {
            "scenario": "dashboard",
            "params": params,
            "results": {},
            "error": f"{CHROMIUM} is missing (scripts/ensure-services installs it)",
        }
    results: dict[str, Any] = {}
    warnings: list[str] = []
    for schedule in schedules:
        name = schedule.name
        phase = await _phase(schedule, rate, duration, keep_data)
        results[name] = phase
        warnings += [f"{name}: {w}" for w in phase["cpu_warnings"]]
        if phase["finals_missing"]:
            warnings.append(f"{name}: {phase['finals_missing']} finals never reached the DOM")
        if phase["publisher_late_sends"] > phase["events_sent"] * 0.01:
            warnings.append(
                f"{name}: publisher fell behind its schedule"
                f" ({phase['publisher_late_sends']} late sends)"
            )
        if not phase["drained"]:
            warnings.append(f"{name}: the page had not shown every call's last line 10 s later")
        if phase["console_errors"]:
            warnings.append(f"{name}: console errors {phase['console_errors']}")
    return {
        "scenario": "dashboard",
        "params": params,
        "results": results,
        "targets": {},
        "warnings": warnings,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--calls", type=int, default=300, help="live calls in the grid")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second in total")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    parser.add_argument(
        "--phases",
        default="0,3,3b",
        help="comma list, one phase each: N interim results per final (0: finals only),"
        " spread over the calls, or with a 'b' sent back to back to one call",
    )
    args = parser.parse_args(argv)
    phases = chosen(parser, args.phases, PHASES, "phases", required=True)
    result: Result = run_async(
        lambda: run(args.calls, args.rate, args.duration, phases, args.keep_data)
    )
    emit(result, args.json)
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
