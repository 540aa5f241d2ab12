"""webhooks: latency from an append to its signed webhook at a receiver (one node, SQLite).

A server on SQLite with one webhook endpoint (``transcript.final``) on a
receiver in this process (loopback: ``SCRIBELINE_WEBHOOK_ALLOW_PRIVATE``).
Finals are appended through REST one at a time, paced, round-robin over a few
calls, and each is matched at the receiver by its ``webhook-id``. Reported:
the POST's start to the webhook's arrival (append, commit, claim, sign and
send: an upper bound of commit-to-receiver), and the REST append alone, both
p50/p99/max; fails if an event is lost, repeated or out of order in its call.

    flock /tmp/bench.lock .venv/bin/python -m bench.webhooks
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence

import orjson
from aiohttp import web

from bench.common import Api, Result, base_parser, emit, exit_status, print_params
from bench.metrics import percentile
from bench.server import Server, scribeline_bin

__all__ = ["main", "run"]


def _admin_key(server: Server) -> str:
    out = subprocess.run(
        [scribeline_bin(), "keys", "create", "--org", "bench", "--scopes", "admin",
         "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return out.strip().splitlines()[-1].strip()


_QUANTILES = (("p50_ms", 50.0), ("p99_ms", 99.0), ("max_ms", 100.0))


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {name: round(percentile(ordered, q) * 1000, 2) for name, q in _QUANTILES}


async def _measure(server: Server, events: int, calls: int, interval: float) -> Result:
    arrived: dict[tuple[str, int], float] = {}
    order: dict[str, list[int]] = {}
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        now = time.perf_counter()
        key = (body["data"]["call_sid"], body["data"]["seq"])
        if key not in arrived:
            arrived[key] = now
        order.setdefault(key[0], []).append(key[1])
        if len(arrived) >= events:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sent: dict[tuple[str, int], float] = {}
    appends: list[float] = []
    try:
        async with Api(server.http, _admin_key(server)) as api:
            await api.post(
                "/v1/webhooks",
                {"url": f"http://127.0.0.1:{port}/hook", "events": ["transcript.final"]},
            )
            sids = [f"CAwebhook{n}" for n in range(calls)]
            await api.create_calls(sids)
            for n in range(events):
                sid = sids[n % calls]
                began = time.perf_counter()
                seq = await api.append(sid, n)
                appends.append(time.perf_counter() - began)
                sent[(sid, seq)] = began
                await asyncio.sleep(interval)
            async with asyncio.timeout(30):
                await done.wait()
    finally:
        await runner.cleanup()
    latencies = [arrived[key] - began for key, began in sent.items() if key in arrived]
    lost = len(sent) - len(latencies)
    repeated = sum(len(seqs) - len(set(seqs)) for seqs in order.values())
    reordered = sum(seqs != sorted(seqs) for seqs in order.values())
    result: Result = {
        "scenario": "webhooks",
        "results": {
            "append_to_receiver": _quantiles(latencies),
            "rest_append": _quantiles(appends),
            "events": len(latencies),
            "lost": lost,
            "repeated": repeated,
            "reordered_calls": reordered,
        },
    }
    if lost or repeated or reordered:
        result["error"] = f"{lost} lost, {repeated} repeated, {reordered} calls out of order"
    return result


def run(events: int, calls: int, interval: float, keep_data: bool = False) -> Result:
    print_params("webhooks", {"events": events, "calls": calls, "interval_s": interval})
    env = {"SCRIBELINE_WEBHOOK_ALLOW_PRIVATE": "true"}
    with Server(env, keep_data=keep_data) as server:
        return asyncio.run(_measure(server, events, calls, interval))


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200, help="finals appended")
    parser.add_argument("--calls", type=int, default=10, help="calls they go to, in turn")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between appends")
    args = parser.parse_args(argv)
    return exit_status(emit(run(args.events, args.calls, args.interval, args.keep_data), args.json))


if __name__ == "__main__":
    sys.exit(main())
