"""metrics_overhead: the fanout scenario with metrics on and off, alternating, in one run.

Each round runs ``fanout`` against a server with ``SCRIBELINE_METRICS_ENABLED``
true and one with it false (the order alternates from round to round), then
against the reference server, and reports server µs of CPU per delivery for
each, their medians and the overhead of metrics on over off.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from typing import Any

from bench import fanout
from bench.common import Result, base_parser, emit
from bench.workers import run_async

__all__ = ["main", "run"]


async def run(rounds: int, duration: float, subscribers: int) -> Result:
    runs: list[dict[str, Any]] = []
    for i in range(rounds):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for mode in (*order, "reference"):
            result = await fanout.run(
                subscribers=subscribers,
                duration=duration,
                server="reference" if mode == "reference" else "scribeline",
                metrics=mode == "on",
            )
            r = result["results"]
            runs.append(
                {
                    "round": i + 1,
                    "mode": mode,
                    "us_per_delivery": r["server_us_per_delivery"],
                    "latency_p99_ms": r["latency"]["p99_ms"] if "latency" in r else None,
                    "deliveries": r["deliveries"],
                    "expected_deliveries": r["expected_deliveries"],
                    "warnings": result["warnings"],
                }
            )
            print(f"round {i + 1} {mode}: {r['server_us_per_delivery']} µs/delivery", flush=True)
    medians = {
        mode: statistics.median(x["us_per_delivery"] for x in runs if x["mode"] == mode)
        for mode in ("on", "off", "reference")
    }
    return {
        "scenario": "metrics_overhead",
        "params": {"rounds": rounds, "duration_s": duration, "subscribers": subscribers},
        "results": {
            "runs": runs,
            "median_us_per_delivery": medians,
            "overhead_percent": round((medians["on"] / medians["off"] - 1) * 100, 1),
        },
        "warnings": [w for x in runs for w in x["warnings"]],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of on, off, reference")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    parser.add_argument("--subscribers", type=int, default=1000, help="subscriber connections")
    args = parser.parse_args(argv)
    result: Result = run_async(lambda: run(args.rounds, args.duration, args.subscribers))
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
