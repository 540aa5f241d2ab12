"""alerts: CPU per final transcript of alert rule evaluation (no server).

Ten rules as an organization might set them: five keyword rules (a few words
and phrases each), four regular expressions (RE2) and one negative-sentiment
rule (VADER, a window of 3 finals per speaker). Each final of a stream of
realistic lines (two speakers) is checked the way ``AlertService`` checks a
stored batch of one final: every keyword and regex rule on its text, and the
sentiment rule over the finals stored before it (up to 64 of them: what a
read of the last 256 events holds). Every line is made unique, so VADER's
score cache never hits (the cost of a new final). Reports mean µs of process
CPU per final, for the keyword and regex rules alone, the sentiment rule
alone, and all ten; and the per-final p50/p99 wall time of all ten.

    flock /tmp/bench.lock .venv/bin/python -m bench.alerts
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import Result, base_parser, emit, print_params
from bench.metrics import percentile
from scribeline.alerts import sentiment
from scribeline.alerts.rules import AlertRule, CompiledRule, Final, compile_rule, config_of, matches

__all__ = ["main", "run"]

CORPUS = Path(__file__).parent.parent / "tests" / "data" / "redaction_corpus.jsonl"
LINES = [
    "Hi, I'm calling about my order, it still hasn't arrived.",
    "I'm sorry to hear that. Can you give me the order number?",
    "It's order 4471 2290, placed two weeks ago.",
    "Thank you. I can see it was shipped last Tuesday.",
    "This is ridiculous, I want a refund or I'll cancel my account.",
    "I understand your frustration, let me check what I can do.",
    "Honestly this is the worst service I have ever had.",
    "I can offer you express shipping at no cost.",
    "Fine, but if it doesn't come by Friday I'm going to a lawyer.",
    "Noted. Is there anything else I can help you with today?",
]
RULES: list[tuple[str, dict[str, object]]] = [
    ("keyword", {"keywords": ["refund", "money back", "chargeback"]}),
    ("keyword", {"keywords": ["cancel my account", "close my account", "unsubscribe"]}),
    ("keyword", {"keywords": ["lawyer", "attorney", "sue", "legal action"]}),
    ("keyword", {"keywords": ["supervisor", "manager", "escalate"]}),
    ("keyword", {"keywords": ["complaint", "better business bureau", "review"]}),
    ("regex", {"pattern": r"order\s*(number|#)?\s*\d[\d ]{3,}"}),
    ("regex", {"pattern": r"\b(worst|terrible|awful|horrible)\b.{0,40}\b(service|experience)\b"}),
    ("regex", {"pattern": r"\$\s?\d+(\.\d\d)?"}),
    ("regex", {"pattern": r"(?i)\bby (monday|tuesday|wednesday|thursday|friday)\b"}),
    ("sentiment", {"threshold": -0.5, "window": 3}),
]
HISTORY = 64


def _rules() -> tuple[list[CompiledRule], CompiledRule]:
    compiled = [
        compile_rule(AlertRule(n, 1, f"rule {n}", kind, config_of(kind, fields), None, True, 0, 0))
        for n, (kind, fields) in enumerate(RULES, 1)
    ]
    return compiled[:-1], compiled[-1]


def _lines() -> list[str]:
    if CORPUS.exists():
        return [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line]
    return LINES


def _measure(
    finals: list[Final], check: Callable[[list[Final], Final], object]
) -> dict[str, float]:
    walls: list[float] = []
    cpu = time.process_time()
    for n, final in enumerate(finals):
        history = finals[max(0, n + 1 - HISTORY) : n + 1]
        start = time.perf_counter()
        check(history, final)
        walls.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    walls.sort()
    return {
        "cpu_us_per_final": round(cpu / len(finals) * 1e6, 1),
        "p50_us": round(percentile(walls, 50) * 1e6, 1),
        "p99_us": round(percentile(walls, 99) * 1e6, 1),
    }


def run(rounds: int) -> Result:
    lines = _lines()
    matchers, mood = _rules()
    sentiment.analyzer()  # its lexicon, read once, outside the measure
    print_params("alerts", {"rules": len(RULES), "lines": len(lines), "rounds": rounds})

    def finals(tag: str) -> list[Final]:
        # Unique texts: VADER's cache never hits.
        return [
            Final(n, None, ("user", "assistant")[n % 2], f"{line} ({tag} {n})")
            for n, line in enumerate(lines * rounds, 1)
        ]

    def sentiment_only(history: list[Final], final: Final) -> object:
        return sentiment.crossings(mood, history, [final])

    def all_rules(history: list[Final], final: Final) -> object:
        return matches(matchers, final), sentiment.crossings(mood, history, [final])

    results = {
        "keyword_and_regex": _measure(finals("a"), lambda _, f: matches(matchers, f)),
        "sentiment": _measure(finals("b"), sentiment_only),
        "all_ten_rules": _measure(finals("c"), all_rules),
    }
    return {"scenario": "alerts", "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20, help="passes over the lines")
    args = parser.parse_args(argv)
    emit(run(args.rounds), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
