"""Alert rules: their settings, checked and compiled, and what a final sets off.

Pure: no storage, no clock. A rule is one of three kinds:

* ``keyword``: any of a list of words or phrases, case-insensitive, as whole
  words (``refund`` does not match ``refunded``; the words of a phrase may be
  apart by any white space).
* ``regex``: a regular expression in RE2's syntax (google-re2), which runs in
  time linear in the text whatever the pattern: a pattern RE2 refuses
  (backreferences, look-around) or one too large is refused when the rule is
  made, never when a final is checked.
* ``sentiment``: the mean VADER compound score of a speaker's last ``window``
  finals falls to ``threshold`` or below (``alerts.sentiment``).

Each rule may be limited to one speaker. Only final transcripts are checked.
"""

from __future__ import annotations

import functools
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import re2

from scribeline.errors import InvalidRequest

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW",
    "KIND_FIELDS",
    "MATCHED_CHARS",
    "MAX_KEYWORDS",
    "MAX_KEYWORD_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_RULES",
    "MAX_WINDOW",
    "AlertRule",
    "CompiledRule",
    "Final",
    "Match",
    "RuleKind",
    "check_cost",
    "compile_rule",
    "config_of",
    "final_of",
    "matches",
    "segment_key",
]

#: Rules an organization may have.
MAX_RULES = 100
#: Characters of a regular expression.
MAX_PATTERN_CHARS = 512
#: Words or phrases of a keyword rule, and characters of each.
MAX_KEYWORDS = 50
MAX_KEYWORD_CHARS = 100
#: Finals a sentiment rule averages at most, and its defaults.
MAX_WINDOW = 20
DEFAULT_WINDOW = 3
DEFAULT_THRESHOLD = -0.5
#: Characters of the matched text an alert carries.
MATCHED_CHARS = 200
#: Memory RE2 may use for one compiled pattern (a larger program is refused).
RE2_MAX_MEM = 4 << 20
#: A regular expression is tried on :func:`_probe_texts` (16 KiB in all, the
#: largest final) when its rule is made: one that takes longer than this (CPU seconds)
#: over them is refused. RE2 is linear in the text, but a pattern whose automaton
#: outgrows ``RE2_MAX_MEM`` falls back to a slower engine: ``(.{0,50}a){5}x``
#: took 113 ms on the probes and ``.{0,1000}x`` 273 ms, where ordinary patterns
#: take under 1 ms and ``\pL+(\s+\pL+){0,5}x`` 8 ms.
PROBE_BUDGET = 0.025


class RuleKind(StrEnum):
    KEYWORD = "keyword"
    REGEX = "regex"
    SENTIMENT = "sentiment"


#: The settings of each kind (the rest of a rule is common to all).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    RuleKind.KEYWORD: ("keywords",),
    RuleKind.REGEX: ("pattern", "case_sensitive"),
    RuleKind.SENTIMENT: ("threshold", "window"),
}


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A stored rule. ``config`` holds its kind's settings (``KIND_FIELDS``)."""

    id: int
    org_id: int
    name: str
    kind: str
    config: dict[str, Any]
    speaker: str | None
    enabled: bool
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Final:
    """A stored final transcript, as rules see it."""

    seq: int
    segment_id: str | None
    speaker: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Match:
    """What a rule found in a final: the text it matched, and a score (sentiment)."""

    matched: str
    score: float | None = None


def segment_key(final: Final) -> str:
    """What "once per segment" counts by: the segment's id when it has one (so a
    final sent again, or corrected, under the same id does not fire again),
    else the final's seq."""
    return f"id:{final.segment_id}" if final.segment_id is not None else f"seq:{final.seq}"


def final_of(seq: int, data: Mapping[str, Any]) -> Final | None:
    """The final in a transcript event's data (None: a partial)."""
    if not data.get("is_final"):
        return None
    segment = data.get("segment_id")
    speaker = data.get("speaker")
    return Final(
        seq,
        segment if isinstance(segment, str) else None,
        speaker if isinstance(speaker, str) else None,
        str(data.get("content", "")),
    )


def config_of(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A kind's settings from a request's fields (absent ones get their
    defaults); ``InvalidRequest`` for settings of another kind or missing ones."""
    if kind not in KIND_FIELDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KIND_FIELDS)}")
    own = KIND_FIELDS[kind]
    foreign = sorted(k for k, v in fields.items() if v is not None and k not in own)
    if foreign:
        raise InvalidRequest(f"A {kind} rule has no {', '.join(foreign)}")
    given = {k: v for k, v in fields.items() if v is not None}
    if kind == RuleKind.KEYWORD:
        if not given.get("keywords"):
            raise InvalidRequest("A keyword rule needs keywords")
        return {"keywords": list(given["keywords"])}
    if kind == RuleKind.REGEX:
        if not given.get("pattern"):
            raise InvalidRequest("A regex rule needs a pattern")
        return {"pattern": given["pattern"], "case_sensitive": given.get("case_sensitive", False)}
    return {
        "threshold": float(given.get("threshold", DEFAULT_THRESHOLD)),
        "window": int(given.get("window", DEFAULT_WINDOW)),
    }


def _clip(text: str) -> str:
    return text[:MATCHED_CHARS]


class CompiledRule:
    """A rule ready to check finals: ``match`` for keywords and expressions
    (sentiment rules are judged over a window, in ``alerts.sentiment``)."""

    __slots__ = ("_search", "rule")

    def __init__(self, rule: AlertRule, search: Any = None) -> None:
        self.rule = rule
        self._search = search

    @property
    def kind(self) -> str:
        return self.rule.kind

    def applies_to(self, final: Final) -> bool:
        return self.rule.speaker is None or final.speaker == self.rule.speaker

    def match(self, final: Final) -> Match | None:
        """What a keyword or regex rule finds in ``final`` (None: nothing)."""
        if self._search is None or not self.applies_to(final):
            return None
        found = self._search(final.text)
        return None if found is None else Match(_clip(found.group(self._group)))

    @property
    def _group(self) -> int:
        return 1 if self.rule.kind == RuleKind.KEYWORD else 0


#: Not a word character (Python's ``\w``: RE2's is ASCII only), or an end.
_EDGE_BEFORE = r"(?:^|[^\pL\pN_])"
_EDGE_AFTER = r"(?:[^\pL\pN_]|$)"


def _keyword_search(keywords: Sequence[str]) -> Any:
    """One RE2 alternation of every phrase, longest first, between non-word
    characters (the phrase is group 1). RE2, not ``re``: 50 phrases of 50
    words against 16 KiB of their prefixes took ``re`` 0.4 s of the loop."""
    phrases = sorted({" ".join(k.split()) for k in keywords if k.strip()}, key=len, reverse=True)
    if not phrases:
        raise InvalidRequest("keywords must not be blank")
    # ``\s``, not ``[\s\p{Z}]``: the Unicode class outgrew RE2's DFA memory and fell
    # back to its slow engine (1.6 s for the same text).
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split(" "))) for p in phrases)
    return _re2(f"{_EDGE_BEFORE}({alternatives}){_EDGE_AFTER}", case_sensitive=False)


def _regex_search(pattern: str, case_sensitive: bool) -> Any:
    # Groups only cost: the matched text is the whole match, which RE2's DFA
    # finds alone (with groups, (.{0,400})+x took 150 ms on 16 KiB, 16 without).
    return _re2(pattern, case_sensitive, never_capture=True)


def _re2(pattern: str, case_sensitive: bool, never_capture: bool = False) -> Any:
    options = re2.Options()
    options.never_capture = never_capture
    options.log_errors = False  # refusals are the client's 422, not our stderr
    options.max_mem = RE2_MAX_MEM
    options.case_sensitive = case_sensitive
    try:
        return re2.compile(pattern, options).search
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else ""
        raise InvalidRequest(
            f"pattern is not a regular expression RE2 accepts: {reason[:200]}".rstrip(": ")
        ) from None


@functools.cache
def _probe_texts() -> tuple[str, ...]:
    """4 KiB texts of a few small alphabets (fixed seed): the inputs on which a
    slow pattern shows itself (letters, digits, spaces; few distinct ones)."""
    rng = random.Random(15)
    alphabets = ("ab y", "abcdefghij ", "a1 b2", "the quick brown fox 0123456789")
    return tuple("".join(rng.choice(a) for _ in range(4096)) for a in alphabets)


def check_cost(compiled: CompiledRule) -> None:
    """Refuse (``InvalidRequest``) a rule whose expression is slow on the probe
    texts; run when a rule is made or changed, never when finals are checked."""
    search = compiled._search
    if search is None or compiled.kind != RuleKind.REGEX:
        return
    start = time.thread_time()
    for text in _probe_texts():
        search(text)
        if time.thread_time() - start > PROBE_BUDGET:
            raise InvalidRequest(
                "pattern is too slow to check on every final (its automaton is too"
                " large: bound fewer repetitions, e.g. .{0,50} inside a repeated group)"
            )


def compile_rule(rule: AlertRule) -> CompiledRule:
    """Check and compile ``rule``; ``InvalidRequest`` says what is wrong with it
    (the same check runs before a rule is stored, so stored rules compile)."""
    config = rule.config
    if rule.kind == RuleKind.KEYWORD:
        keywords = config.get("keywords")
        if not isinstance(keywords, list) or not 1 <= len(keywords) <= MAX_KEYWORDS:
            raise InvalidRequest(f"keywords must be a list of 1 to {MAX_KEYWORDS} phrases")
        if not all(isinstance(k, str) and 0 < len(k) <= MAX_KEYWORD_CHARS for k in keywords):
            raise InvalidRequest(f"each keyword has 1 to {MAX_KEYWORD_CHARS} characters")
        return CompiledRule(rule, _keyword_search(keywords))
    if rule.kind == RuleKind.REGEX:
        pattern = config.get("pattern")
        if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN_CHARS:
            raise InvalidRequest(f"pattern has 1 to {MAX_PATTERN_CHARS} characters")
        return CompiledRule(rule, _regex_search(pattern, bool(config.get("case_sensitive"))))
    if rule.kind == RuleKind.SENTIMENT:
        threshold, window = config.get("threshold"), config.get("window")
        if not isinstance(threshold, float) or not -1.0 <= threshold <= 1.0:
            raise InvalidRequest("threshold is a number from -1 to 1")
        if not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
            raise InvalidRequest(f"window is 1 to {MAX_WINDOW} finals")
        return CompiledRule(rule)
    raise InvalidRequest(f"kind must be one of {', '.join(KIND_FIELDS)}")


def matches(rules: Iterable[CompiledRule], final: Final) -> list[tuple[CompiledRule, Match]]:
    """The keyword and regex rules that ``final`` sets off, with what they matched."""
    found = []
    for rule in rules:
        match = rule.match(final)
        if match is not None:
            found.append((rule, match))
    return found
