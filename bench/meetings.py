"""meetings: many meeting bots, a full house of subscribers each, live transcripts.

``--bots`` bots are created through REST (``POST /v1/bots``, realtime model);
each bot's producer (``producer_url``, in this process) sends ``start``, then
``ts`` events at ``--rate`` per second, pipelined (acks ``{"type":"ack","seq":N,
"ref":N}`` are checked in order). Each bot has ``--subscribers-per-bot``
subscribers on ``/v1/bots/{id}/ws`` (the default 10 is the per-bot limit): one
on the read-write URL, the rest on the read-only URL, held by worker processes.

A short warm-up proves every subscriber is attached (the stream is live only
and has no "joined" message); then the measurement window covers
``--duration`` seconds of events and closes once every subscriber has the last
one. Each transcript's text starts with its send time (``time.time_ns()``),
the bot and a per-bot index, so subscribers measure publish-to-deliver latency
and check that they got every event of their bot exactly once and in order;
any loss, duplicate, reordering or event of another bot fails the run.

Last, outside the window, ``--actions`` chat-message actions are sent on the
read-write URLs (round-robin over the bots, at most ``--action-rate`` per
second per connection; the server's limit is 10) and timed until the bot's
producer receives them.

Then the **live twin** (unless ``--no-live-twin``): the same shape on
live-transcript streams, measured on the same server once the bots'
connections are closed: ``--bots`` calls x ``--subscribers-per-bot``
subscribers on ``/live-transcript/{sid}``, each call fed at ``--rate`` events
per second by its producer WebSocket (``/v1/ingest/{sid}``), round-robin, for
``--duration`` seconds (``bench.many_calls``'s load, with its producers,
subscribers and publisher). The result carries both figures of server µs of
CPU per delivery and their ratio, bots / live (target <= 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench import many_calls, rawws
from bench.backends import Services
from bench.common import Api, Result, base_parser, emit, exit_status, print_params, target
from bench.live import Published, pace, run_live
from bench.metrics import CpuMeter, latency_summary
from bench.producers import open_producers
from bench.server import HOST, Server
from bench.stores import STORES, on_store
from bench.workers import Message, WorkerPool, pipe_recv, raise_nofile, run_async

__all__ = ["main", "run"]

#: The server's default subscriber connections per bot (``SCRIBELINE_MAX_CONNECTIONS_PER_BOT``).
DEFAULT_BOT_CONNECTIONS = 10
#: The server's limit on messages per second from one bot subscriber.
SERVER_ACTIONS_PER_SECOND = 10.0
#: Actions per second in total, at most (they are spread over the bots).
MAX_TOTAL_ACTION_RATE = 100.0
#: A bot stream's server CPU per delivery, at most this many times the live twin's.
TARGET_BOTS_OVER_LIVE = 2.0

_FILLER = "and that is why we moved the launch review to Thursday afternoon"


def _ts_message(bot: int, index: int) -> bytes:
    """One ``ts`` event; its text starts with the send time, the bot and its index."""
    at = index * 0.2
    return orjson.dumps(
        {
            "type": "ts",
            "data": {
                "transcript": f"{time.time_ns()} {bot} {index} {_FILLER}",
                "start": at,
                "end": at + 0.2,
                "speaker": bot % 4,
                "speaker_name": None,
            },
            "ref": index,
        }
    )


def _ws_path(url: str | None, what: str) -> str:
    """The path and query of a capability URL (the connection always goes to HOST)."""
    if not url:
        raise RuntimeError(f"the bot has no {what}")
    parts = urlsplit(url)
    if parts.hostname != HOST:
        raise RuntimeError(f"{what} points at {parts.hostname}, not {HOST}")
    return f"{parts.path}?{parts.query}"


# -- producers (this process) ------------------------------------------------------


@dataclass(slots=True)
class ProducerStats:
    """What every bot producer saw, together."""

    sent: int = 0
    acked: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    ack_us: list[int] = field(default_factory=list)  # send -> stored-and-acked (measured only)
    misordered: int = 0  # an ack whose seq was not the previous + 1
    wrong_ref: int = 0  # an ack whose ref was not the one sent next
    unexpected: Counter[str] = field(default_factory=Counter)  # other frames the bots got
    action_us: list[int] = field(default_factory=list)  # action send -> producer receive
    actions_seen: set[int] = field(default_factory=set)
    action_duplicates: int = 0
    record_acks: bool = False
    actions_expected: int = 0
    actions_done: asyncio.Event = field(default_factory=asyncio.Event)


class BotProducer:
    """One bot's producer connection: pipelined events, in-order acks, actions received."""

    def __init__(self, bot: int, path: str, stats: ProducerStats) -> None:
        self.bot = bot
        self.path = path
        self.stats = stats
        self.ws: rawws.RawWebSocket | None = None
        self.last_seq = 0
        self._pending: deque[tuple[Any, int]] = deque()  # (ref, perf_counter_ns at send)

    @property
    def closed(self) -> bool:
        return self.ws is None or self.ws.closed.done()

    def _send(self, payload: bytes, ref: Any) -> None:
        assert self.ws is not None
        self._pending.append((ref, time.perf_counter_ns()))
        self.stats.sent += 1
        self.ws.send_text(payload)

    def start(self) -> None:
        self._send(orjson.dumps({"type": "start", "data": {}, "ref": "start"}), "start")

    def send_ts(self, index: int) -> None:
        self._send(_ts_message(self.bot, index), index)

    def on_text(self, payload: bytes, now_ns: int) -> None:
        msg = orjson.loads(payload)
        stats = self.stats
        if "action" in msg:
            data = msg.get("data") or {}
            if msg["action"] != "chat-message" or not isinstance(data.get("content"), str):
                stats.unexpected[f"action {msg['action']}"] += 1
                return
            sent_ns, bot, k = (int(x) for x in data["content"].split(" ", 3)[:3])
            if bot != self.bot:
                stats.unexpected["action for another bot"] += 1
            if k in stats.actions_seen:
                stats.action_duplicates += 1
                return
            stats.actions_seen.add(k)
            stats.action_us.append((now_ns - sent_ns) // 1000)
            if len(stats.actions_seen) >= stats.actions_expected:
                stats.actions_done.set()
            return
        kind = msg.get("type")
        if kind not in ("ack", "error"):
            stats.unexpected[str(kind)] += 1
            return
        ref, began = self._pending.popleft() if self._pending else (None, 0)
        if msg.get("ref") != ref:
            stats.wrong_ref += 1
        if kind == "error":
            stats.errors[f"{msg.get('error')}: {msg.get('message')}"[:160]] += 1
            return
        seq = int(msg["seq"])
        if self.last_seq and seq != self.last_seq + 1:
            stats.misordered += 1
        self.last_seq = seq
        stats.acked += 1
        if stats.record_acks and began:
            stats.ack_us.append((time.perf_counter_ns() - began) // 1000)


async def _open_producers(
    port: int, paths: Sequence[str], stats: ProducerStats, concurrency: int = 100
) -> list[BotProducer]:
    gate = asyncio.Semaphore(concurrency)

    async def one(bot: int, path: str) -> BotProducer:
        producer = BotProducer(bot, path, stats)
        async with gate, asyncio.timeout(30):
            producer.ws = await rawws.connect(HOST, port, path, producer.on_text)
        return producer

    return list(await asyncio.gather(*(one(b, p) for b, p in enumerate(paths))))


async def _all_answered(
    producers: Sequence[BotProducer], stats: ProducerStats, secs: float
) -> None:
    """Wait until every message sent so far has its ack (or error); raise if not in time."""
    deadline = time.monotonic() + secs
    while stats.acked + stats.errors.total() < stats.sent:
        if time.monotonic() > deadline:
            missing = stats.sent - stats.acked - stats.errors.total()
            raise RuntimeError(f"{missing} producer messages unanswered after {secs:.0f} s")
        if any(p.closed for p in producers):
            closed = sum(p.closed for p in producers)
            raise RuntimeError(f"{closed} bot producer connections were closed")
        await asyncio.sleep(0.005)


async def _publish(
    producers: Sequence[BotProducer], stats: ProducerStats, first: int, per_bot: int, rate: float
) -> tuple[int, float]:
    """``per_bot`` events to every bot, indices from ``first``, round-robin at ``rate`` per
    bot per second; waits for every ack. Returns (late sends, seconds the sending took)."""
    bots = len(producers)

    def send(i: int) -> None:
        producers[i % bots].send_ts(first + i // bots)

    began = time.monotonic()
    late = await pace(bots * per_bot, rate * bots, send)
    took = time.monotonic() - began
    await _all_answered(producers, stats, 60)
    return late, took


# -- subscribers (worker processes) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriberSpec:
    bot: int
    role: str  # "read-write" or "read-only"
    path: str


@dataclass(frozen=True, slots=True)
class MeetingJob:
    host: str
    port: int
    subscribers: tuple[SubscriberSpec, ...]
    measure_from: int  # the first measured index; the ones before are the warm-up
    concurrency: int = 100
    connect_timeout: float = 30.0


@dataclass(slots=True)
class Watcher:
    """One subscriber: checks its bot's ``ts`` indices arrive once each, in order."""

    spec: SubscriberSpec
    measure_from: int
    samples: list[int]  # shared per worker: latency in µs of measured events
    last: int = -1  # the last index received
    measured: int = 0  # measured events received (index >= measure_from)
    gaps: int = 0  # events skipped (counted one by one)
    duplicates: int = 0  # an index at or below the last one (a repeat or a reordering)
    foreign: int = 0  # an event of another bot
    other: Counter[str] = field(default_factory=Counter)  # frames that are not ``ts``
    last_ns: int = 0

    def on_text(self, payload: bytes, now_ns: int) -> None:
        msg = orjson.loads(payload)
        if msg.get("type") != "ts":
            self.other[str(msg.get("type"))] += 1
            return
        sent, bot, index = msg["data"]["transcript"].split(" ", 3)[:3]
        if int(bot) != self.spec.bot:
            self.foreign += 1
            return
        i = int(index)
        if i <= self.last:
            self.duplicates += 1
            return
        if self.last >= 0:
            self.gaps += i - self.last - 1
        self.last = i
        if i >= self.measure_from:
            self.measured += 1
            self.last_ns = now_ns
            self.samples.append((now_ns - int(sent)) // 1000)


def meetings_worker(pipe: Connection, job: MeetingJob) -> None:
    """Worker process entry point (see :mod:`bench.workers`)."""
    raise_nofile()
    with contextlib.suppress(EOFError, KeyboardInterrupt, BrokenPipeError):
        run_async(lambda: _watch(pipe, job))


async def _watch(pipe: Connection, job: MeetingJob) -> None:
    samples: list[int] = []
    watchers: list[Watcher] = []
    links: list[rawws.RawWebSocket] = []
    errors: Counter[str] = Counter()
    gate = asyncio.Semaphore(job.concurrency)

    async def join(spec: SubscriberSpec) -> None:
        watcher = Watcher(spec, job.measure_from, samples)
        async with gate:
            try:
                async with asyncio.timeout(job.connect_timeout):
                    link = await rawws.connect(job.host, job.port, spec.path, watcher.on_text)
                links.append(link)
                watchers.append(watcher)
            except Exception as exc:
                errors[type(exc).__name__ + (f": {exc}" if str(exc) else "")[:120]] += 1

    await asyncio.gather(*(join(spec) for spec in job.subscribers))
    pipe.send({"connected": len(watchers), "failed": errors.total(), "errors": dict(errors)})
    try:
        while True:
            cmd = await pipe_recv(pipe)
            if cmd["cmd"] == "until":
                pipe.send(await _until(cmd, watchers, links, samples))
            elif cmd["cmd"] == "actions":
                pipe.send(await _actions(cmd, watchers, links))
            elif cmd["cmd"] == "exit":
                break
    finally:
        for link in links:
            link.abort()


async def _until(
    cmd: Message, watchers: list[Watcher], links: list[rawws.RawWebSocket], samples: list[int]
) -> Message:
    """Wait until every subscriber has index ``cmd["last"]`` (or time runs out); report."""
    last = int(cmd["last"])
    deadline = time.monotonic() + float(cmd["timeout"])
    while time.monotonic() < deadline:
        if all(w.last >= last for w in watchers) or all(link.closed.done() for link in links):
            break
        await asyncio.sleep(0.01)
    other: Counter[str] = Counter()
    for w in watchers:
        other.update(w.other)
    codes = Counter(str(link.close_code) for link in links if link.closed.done())
    out: Message = {
        "subscribers": len(watchers),
        "behind": sum(w.last < last for w in watchers),
        "measured": sum(w.measured for w in watchers),
        "complete": sum(w.measured == cmd["expect"] for w in watchers),
        "gaps": sum(w.gaps for w in watchers),
        "duplicates": sum(w.duplicates for w in watchers),
        "foreign": sum(w.foreign for w in watchers),
        "other_frames": dict(other),
        "closed": dict(codes),
        "last_ns": max((w.last_ns for w in watchers), default=0),
        "samples_us": list(samples) if cmd.get("samples") else [],
    }
    samples.clear()
    return out


async def _actions(
    cmd: Message, watchers: list[Watcher], links: list[rawws.RawWebSocket]
) -> Message:
    """Send this worker's share of the chat-message actions on the read-write URLs.

    Action ``k`` goes to bot ``k % bots`` at ``k / rate`` seconds after the start,
    so each connection sends at most ``rate / bots`` per second."""
    count, bots, rate = int(cmd["count"]), int(cmd["bots"]), float(cmd["rate"])
    writers = {
        w.spec.bot: link
        for w, link in zip(watchers, links, strict=True)
        if w.spec.role == "read-write"
    }
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    for k in range(count):
        link = writers.get(k % bots)
        if link is None:
            continue
        delay = start + k / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        content = f"{time.time_ns()} {k % bots} {k} please take notes on this"
        link.send_text(orjson.dumps({"action": "chat-message", "data": {"content": content}}))
        sent += 1
    return {"sent": sent}


# -- the scenario ------------------------------------------------------------------


async def run(
    bots: int = 100,
    subscribers_per_bot: int = 10,
    rate: float = 5.0,
    duration: float = 20.0,
    warmup: float = 2.0,
    actions: int = 200,
    action_rate: float = 5.0,
    procs: int = 2,
    keep_data: bool = False,
    live_twin: bool = True,
) -> Result:
    """The bots, then (``live_twin``) the same shape on live-transcript streams, on the
    same server once the bots' connections are closed."""
    raise_nofile()
    limit = str(max(DEFAULT_BOT_CONNECTIONS, subscribers_per_bot))
    env = {
        "SCRIBELINE_MAX_CONNECTIONS_PER_BOT": limit,
        "SCRIBELINE_MAX_CONNECTIONS_PER_CALL": limit,
    }
    with Server(env, keep_data) as server:
        result = await run_bots(
            server, bots, subscribers_per_bot, rate, duration, warmup, actions, action_rate, procs
        )
        if live_twin:
            twin = await run_live_twin(server, bots, subscribers_per_bot, rate, duration, procs)
            add_live_twin(result, twin)
    result["server_log"] = server.problems()
    return result


async def run_live_twin(
    server: Server,
    calls: int,
    subscribers_per_call: int,
    rate: float,
    duration: float,
    procs: int,
) -> Result:
    """``calls`` calls x ``subscribers_per_call`` live-transcript subscribers, each call fed
    at ``rate`` events per second by its producer WebSocket: ``bench.many_calls``'s
    load at the bots' shape, measured as ``many_calls`` measures it."""
    total_rate = rate * calls
    count = max(1, round(total_rate * duration))
    params = {
        "calls": calls,
        "subscribers_per_call": subscribers_per_call,
        "rate_per_call_per_s": rate,
        "events": count,
        "publisher": f"producer WebSocket x{calls} (one per call)",
    }
    print_params("meetings live twin", params)
    sids = [f"CAtwin{i:05d}" for i in range(calls)]
    async with Api(server.http, server.key) as api:
        await api.create_calls(sids)
    published = Published()
    producers = await open_producers(HOST, server.port, server.key, sids, published, 100)
    try:
        live, _ = await run_live(
            server,
            [sid for sid in sids for _ in range(subscribers_per_call)],
            dict.fromkeys(sids, server.initial_head),
            kind="raw",
            procs=procs,
            sample_every=1,
            publish=lambda: many_calls.publish_ws(producers, published, total_rate, count),
        )
    finally:
        for producer in producers:
            if producer.ws is not None:
                producer.ws.abort()
    results = live.results()
    results["events_published"] = published.acked
    results["server_us_per_event"] = (
        round(live.window.server / published.acked * 1e6, 1) if published.acked else math.nan
    )
    results["publish_errors"] = published.errors
    results["publisher_late_sends"] = published.late
    twin: Result = {
        "scenario": "meetings_live_twin",
        "params": params,
        "results": results,
        "warnings": live.window.warnings(),
    }
    problems = _twin_problems(results, published, count)
    if problems:
        twin["error"] = "live twin: " + ", ".join(problems)
    return twin


def _twin_problems(results: dict[str, Any], published: Published, count: int) -> list[str]:
    """What makes the live twin's run fail: a lost, repeated or unacknowledged event."""
    problems = [
        f"{name} {results[name]}"
        for name in ("subscribe_failures", "gaps", "duplicates", "subscribers_behind")
        if results[name]
    ]
    if results["deliveries"] != results["expected_deliveries"]:
        problems.append(f"{results['deliveries']} of {results['expected_deliveries']} delivered")
    if published.errors or published.misordered or published.acked != count:
        problems.append(
            f"{published.acked} of {count} acked, errors {published.errors},"
            f" misordered acks {published.misordered}"
        )
    return problems


def add_live_twin(result: Result, twin: Result) -> None:
    """Put the live twin's figures and the ratio bots / live into ``result``."""
    mine, theirs = result["results"], twin.get("results", {})
    keys = (
        "server_us_per_delivery",
        "server_us_per_event",
        "deliveries",
        "expected_deliveries",
        "deliveries_per_s",
        "client_us_per_delivery",
        "gaps",
        "duplicates",
    )
    figures = {k: theirs[k] for k in keys if k in theirs}
    if "latency" in theirs:
        figures["latency"] = {k: v for k, v in theirs["latency"].items() if k != "samples"}
    mine["live_twin"] = figures
    bot_us = mine.get("server_us_per_delivery", math.nan)
    live_us = figures.get("server_us_per_delivery", math.nan)
    ratio = round(bot_us / live_us, 2) if live_us and not math.isnan(live_us) else math.nan
    mine["bots_over_live"] = ratio
    result["targets"]["bots_over_live_us_per_delivery"] = target(
        ratio, TARGET_BOTS_OVER_LIVE, at_most=True
    )
    result["live_twin"] = twin
    result["warnings"].extend(f"live twin: {w}" for w in twin.get("warnings", []))
    if twin.get("error"):
        result["warnings"].append(f"FAILED: {twin['error']}")
        result["error"] = "; ".join(filter(None, [result.get("error"), twin["error"]]))


async def run_bots(
    server: Server,
    bots: int = 100,
    subscribers_per_bot: int = 10,
    rate: float = 5.0,
    duration: float = 20.0,
    warmup: float = 2.0,
    actions: int = 200,
    action_rate: float = 5.0,
    procs: int = 2,
) -> Result:
    """The meeting bots alone, on ``server`` (see the module docstring)."""
    per_bot = max(1, round(rate * duration))
    warm = max(2, round(rate * warmup))
    per_connection = min(action_rate, SERVER_ACTIONS_PER_SECOND)
    action_total_rate = min(MAX_TOTAL_ACTION_RATE, bots * per_connection)
    params: dict[str, Any] = {
        "bots": bots,
        "subscribers_per_bot": subscribers_per_bot,
        "read_write_per_bot": 1,
        "rate_per_bot_per_s": rate,
        "events_per_s": bots * rate,
        "deliveries_per_s_expected": bots * rate * subscribers_per_bot,
        "duration_s": duration,
        "events_per_bot": per_bot,
        "warmup_events_per_bot": warm,
        "actions": actions,
        "actions_per_s": action_total_rate,
        "client_procs": procs,
    }
    print_params("meetings", params)
    stats = ProducerStats()
    failures: list[str] = []
    warnings: list[str] = []
    # Bots through REST; their capability URLs.
    async with Api(server.http, server.key) as api:
        gate = asyncio.Semaphore(32)

        async def create(i: int) -> dict[str, Any]:
            body = {
                "meeting_url": f"https://meet.example.com/bench-{i:05d}",
                "bot_name": "Bench Notetaker",
                "transcription_model": "realtime",
            }
            async with gate:
                created: dict[str, Any] = await api.post("/v1/bots", body)
                return created

        made = await asyncio.gather(*(create(i) for i in range(bots)))
    producer_paths = [_ws_path(b.get("producer_url"), "producer_url") for b in made]
    specs = [
        SubscriberSpec(
            b,
            "read-write" if j == 0 else "read-only",
            _ws_path(
                made[b]["websocket_url" if j == 0 else "websocket_read_only_url"],
                "websocket_url" if j == 0 else "websocket_read_only_url",
            ),
        )
        for b in range(bots)
        for j in range(subscribers_per_bot)
    ]
    procs = max(1, min(procs, bots))
    # Worker p holds every subscriber of the bots b with b % procs == p.
    jobs = [
        MeetingJob(HOST, server.port, tuple(s for s in specs if s.bot % procs == p), warm)
        for p in range(procs)
    ]
    producers = await _open_producers(server.port, producer_paths, stats)
    pool = WorkerPool(meetings_worker, jobs)
    try:
        for producer in producers:
            producer.start()
        await _all_answered(producers, stats, 30)
        if stats.errors:
            raise RuntimeError(f"start refused: {dict(stats.errors)}")
        pool.start()
        began = time.monotonic()
        async with asyncio.timeout(300):
            ready = await pool.gather()
        connect_s = time.monotonic() - began
        connected = sum(int(r["connected"]) for r in ready)
        if connected != len(specs):
            errs: Counter[str] = Counter()
            for r in ready:
                errs.update(r["errors"])
            raise RuntimeError(f"{len(specs) - connected} subscribers failed: {dict(errs)}")

        # Warm-up: every subscriber must get the last warm-up event.
        await _publish(producers, stats, 0, warm, rate)
        pool.broadcast({"cmd": "until", "last": warm - 1, "expect": 0, "timeout": 15})
        async with asyncio.timeout(45):
            live = await pool.gather()
        not_live = sum(int(r["behind"]) for r in live)
        if not_live:
            raise RuntimeError(f"{not_live} subscribers missed the last warm-up event")

        # The measurement window.
        stats.record_acks = True
        acked_before = stats.acked
        meter = CpuMeter(server.pid, [os.getpid(), *pool.pids])
        meter.start()
        started_ns = time.time_ns()
        late, send_s = await _publish(producers, stats, warm, per_bot, rate)
        stats.record_acks = False
        last = warm + per_bot - 1
        pool.broadcast(
            {"cmd": "until", "last": last, "expect": per_bot, "timeout": 30, "samples": True}
        )
        async with asyncio.timeout(60):
            done = await pool.gather()
        window = meter.stop()
        events = stats.acked - acked_before

        # Action round trips, once, outside the window.
        stats.actions_expected = actions
        action_began = time.monotonic()
        pool.broadcast(
            {"cmd": "actions", "count": actions, "bots": bots, "rate": action_total_rate}
        )
        async with asyncio.timeout(actions / action_total_rate + 30):
            action_sent = sum(int(r["sent"]) for r in await pool.gather())
        if actions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stats.actions_done.wait(), 10)
        action_s = time.monotonic() - action_began
        # Did any subscriber get closed by the actions (rate limit)?
        pool.broadcast({"cmd": "until", "last": last, "expect": per_bot, "timeout": 0})
        async with asyncio.timeout(30):
            after = await pool.gather()
    finally:
        for producer in producers:
            if producer.ws is not None:
                producer.ws.abort()
        pool.stop()

    deliveries = sum(int(r["measured"]) for r in done)
    expected = len(specs) * per_bot
    last_ns = max(int(r["last_ns"]) for r in done)
    span = (last_ns - started_ns) / 1e9 if last_ns > started_ns else float("nan")

    def total(key: str) -> int:
        return sum(int(r[key]) for r in done)

    other: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    closed_after: Counter[str] = Counter()
    for r in done:
        other.update(r["other_frames"])
        closed.update(r["closed"])
    for r in after:
        closed_after.update(r["closed"])
    check = {
        "subscribers": len(specs),
        "subscribers_complete": total("complete"),
        "subscribers_behind": total("behind"),
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "gaps": total("gaps"),
        "duplicates_or_reordered": total("duplicates"),
        "foreign_events": total("foreign"),
        "other_frames": dict(other),
        "closed_by_server": dict(closed),
    }
    exactly_once = not (
        deliveries != expected
        or check["subscribers_complete"] != len(specs)
        or check["subscribers_behind"]
        or check["gaps"]
        or check["duplicates_or_reordered"]
        or check["foreign_events"]
        or closed
    )
    if not exactly_once:
        failures.append(
            "not every subscriber received every event exactly once and in order: "
            + ", ".join(f"{k}={v}" for k, v in check.items())
        )
    if other:
        warnings.append(f"subscribers got frames other than ts: {dict(other)}")
    if stats.errors or stats.misordered or stats.wrong_ref or stats.unexpected:
        failures.append(
            f"producer problems: errors={dict(stats.errors)} misordered_acks={stats.misordered} "
            f"wrong_refs={stats.wrong_ref} unexpected={dict(stats.unexpected)}"
        )
    action_lost = actions - len(stats.actions_seen)
    if action_sent != actions or action_lost or stats.action_duplicates:
        failures.append(
            f"actions: {action_sent} of {actions} sent, {action_lost} never reached a producer, "
            f"{stats.action_duplicates} duplicated"
        )
    if closed_after:
        failures.append(f"subscribers closed during the actions: {dict(closed_after)}")
    if late > bots * per_bot * 0.01:
        warnings.append(f"publisher fell behind its schedule ({late} late sends)")
    warnings[:0] = window.warnings()
    warnings.extend(f"FAILED: {f}" for f in failures)

    samples = [s for r in done for s in r["samples_us"]]
    ack = latency_summary(stats.ack_us)
    results: dict[str, Any] = {
        "subscribers": len(specs),
        "subscribe_seconds": round(connect_s, 2),
        "events_sent": events,
        "events_per_s": round(events / send_s, 1) if send_s else float("nan"),
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / span, 1),
        "latency": latency_summary(samples),
        "server_us_per_delivery": round(window.server / deliveries * 1e6, 2)
        if deliveries
        else float("nan"),
        "server_us_per_event": round(window.server / events * 1e6, 1) if events else float("nan"),
        "client_us_per_delivery": round(sum(window.clients[1:]) / deliveries * 1e6, 2)
        if deliveries
        else float("nan"),
        "exactly_once_in_order": exactly_once,
        "check": check,
        "ack_latency": {k: v for k, v in ack.items() if k != "samples"},
        "publisher_late_sends": late,
        "action_round_trip": {
            **latency_summary(stats.action_us),
            "sent": action_sent,
            "received": len(stats.actions_seen),
            "seconds": round(action_s, 2),
        },
        "cpu": window.as_dict(),
    }
    result: Result = {
        "scenario": "meetings",
        "params": params,
        "results": results,
        "targets": {},
        "warnings": warnings,
    }
    if failures:
        result["error"] = "; ".join(failures)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--bots", type=int, default=100, help="meeting bots (M)")
    parser.add_argument(
        "--subscribers-per-bot",
        type=int,
        default=DEFAULT_BOT_CONNECTIONS,
        help="subscribers per bot (S): 1 read-write, the rest read-only",
    )
    parser.add_argument("--rate", type=float, default=5.0, help="ts events per second per bot (R)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured (D)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up events")
    parser.add_argument("--actions", type=int, default=200, help="chat-message actions timed")
    parser.add_argument(
        "--action-rate", type=float, default=5.0, help="actions per second per connection"
    )
    parser.add_argument("--procs", type=int, default=2, help="subscriber worker processes")
    parser.add_argument(
        "--no-live-twin",
        dest="live_twin",
        action="store_false",
        help="skip the same shape on live-transcript streams",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: sets 20 bots, 3 s, 1 s warm-up, 40 actions",
    )
    parser.add_argument(
        "--backend", choices=STORES, default="sqlite", help="the store (see bench.stores)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.bots, args.duration, args.warmup, args.actions = 20, 3.0, 1.0, 40
    with contextlib.ExitStack() as stack:
        services = stack.enter_context(Services()) if args.backend != "sqlite" else None
        stack.enter_context(on_store(args.backend, services))
        result: Result = run_async(
            lambda: run(
                args.bots,
                args.subscribers_per_bot,
                args.rate,
                args.duration,
                args.warmup,
                args.actions,
                args.action_rate,
                args.procs,
                args.keep_data,
                args.live_twin,
            )
        )
    result["backend"] = args.backend
    emit(result, args.json)
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
