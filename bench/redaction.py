"""redaction: CPU per transcript segment of PII redaction (no server).

Runs ``scribeline.redaction.redact`` over every line of the labelled corpus
(tests/data/redaction_corpus.jsonl: realistic transcript lines, about half
with something to redact), ``--rounds`` times, with kinds off (the cost of
the check alone), the four default kinds, and every kind; reports the mean
µs of process CPU per segment and the per-line p50/p99 wall time.

    flock /tmp/bench.lock .venv/bin/python -m bench.redaction
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import Result, base_parser, emit, print_params
from bench.metrics import percentile
from scribeline.redaction import KINDS, redact

__all__ = ["main", "run"]

CORPUS = Path(__file__).parent.parent / "tests" / "data" / "redaction_corpus.jsonl"
MODES = {
    "off": frozenset[str](),
    "default": frozenset({"card", "ssn", "email", "phone"}),
    "all": frozenset(KINDS),
}


def _measure(lines: list[str], kinds: frozenset[str], rounds: int) -> dict[str, float]:
    for line in lines:  # warm the regex caches and phonenumbers' metadata
        redact(line, kinds)
    walls: list[float] = []
    cpu = time.process_time()
    for _ in range(rounds):
        for line in lines:
            start = time.perf_counter()
            redact(line, kinds)
            walls.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    walls.sort()
    return {
        "cpu_us_per_segment": round(cpu / len(walls) * 1e6, 1),
        "p50_us": round(percentile(walls, 50) * 1e6, 1),
        "p99_us": round(percentile(walls, 99) * 1e6, 1),
    }


def run(rounds: int) -> Result:
    lines = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()]
    print_params("redaction", {"segments": len(lines), "rounds": rounds})
    results: dict[str, object] = {
        mode: _measure(lines, kinds, rounds) for mode, kinds in MODES.items()
    }
    results["mean_chars_per_segment"] = round(statistics.mean(len(t) for t in lines), 1)
    return {"scenario": "redaction", "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=40, help="passes over the corpus")
    args = parser.parse_args(argv)
    emit(run(args.rounds), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
