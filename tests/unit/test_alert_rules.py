"""Alert rules, pure (alerts/rules.py, sentiment.py, drafts.py): what each kind
of rule matches in a final, what is refused when a rule is made, and when a
sentiment rule fires (on the crossing, not on every later final)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from scribeline.alerts import sentiment
from scribeline.alerts.drafts import AlertDraft, new_firings, numbered
from scribeline.alerts.rules import (
    AlertRule,
    CompiledRule,
    Final,
    check_cost,
    compile_rule,
    config_of,
    final_of,
    matches,
    segment_key,
)
from scribeline.errors import InvalidRequest


def _rule(
    kind: str, speaker: str | None = None, rule_id: int = 1, **fields: object
) -> CompiledRule:
    rule = AlertRule(rule_id, 1, f"r{rule_id}", kind, config_of(kind, fields), speaker, True, 0, 0)
    return compile_rule(rule)


def _final(text: str, seq: int = 1, speaker: str = "user", segment: str | None = None) -> Final:
    return Final(seq, segment, speaker, text)


def _matched(rule: CompiledRule, text: str, speaker: str = "user") -> str | None:
    found = rule.match(_final(text, speaker=speaker))
    return None if found is None else found.matched


def test_keywords_match_whole_words_in_any_case() -> None:
    rule = _rule("keyword", keywords=["refund", "cancel my account", "C++"])
    assert _matched(rule, "I want a REFUND now.") == "REFUND"
    assert _matched(rule, "please cancel   my\naccount today") == "cancel   my\naccount"
    assert _matched(rule, "i love c++!") == "c++"
    assert _matched(rule, "it was refunded") is None
    assert _matched(rule, "nonrefund") is None
    assert _matched(rule, "cancel my accounts") is None


def test_a_speaker_filter_keeps_the_other_speaker_out() -> None:
    rule = _rule("keyword", speaker="user", keywords=["refund"])
    assert _matched(rule, "refund", speaker="user") == "refund"
    assert _matched(rule, "refund", speaker="assistant") is None


def test_partials_are_not_finals() -> None:
    assert final_of(3, {"content": "refund", "is_final": False}) is None
    final = final_of(3, {"content": "refund", "is_final": True, "speaker": "user"})
    assert final == Final(3, None, "user", "refund")
    assert segment_key(final) == "seq:3"
    assert segment_key(Final(4, "seg_1", "user", "x")) == "id:seg_1"


def test_regular_expressions_run_in_re2() -> None:
    rule = _rule("regex", pattern=r"order\s+#?(\d{4,})")
    assert _matched(rule, "my ORDER #12345 is late") == "ORDER #12345"
    strict = _rule("regex", pattern="Refund", case_sensitive=True)
    assert _matched(strict, "refund") is None
    assert _matched(strict, "Refund") == "Refund"
    long = _rule("regex", pattern="a+")
    assert _matched(long, "a" * 1000) == "a" * 200  # the matched text is clipped


def test_a_catastrophic_pattern_finishes_fast() -> None:
    """``(a+)+$`` takes Python's ``re`` seconds on 30 characters; RE2 is linear."""
    rule = _rule("regex", pattern=r"(a+)+$")
    text = "a" * 100_000 + "!"
    began = time.perf_counter()
    assert _matched(rule, text) is None
    assert _matched(_rule("regex", pattern=r"^(a|a)*$"), "a" * 10_000 + "b") is None
    assert time.perf_counter() - began < 0.5


@pytest.mark.parametrize(
    "pattern",
    [r"(a)\1", r"(?=a)b", r"(?<!x)y", "(", "a{1000}{1000}", "x" * 513],
)
def test_patterns_re2_refuses_are_refused_when_made(pattern: str) -> None:
    with pytest.raises(InvalidRequest):
        _rule("regex", pattern=pattern)


def test_settings_must_fit_the_kind() -> None:
    with pytest.raises(InvalidRequest, match="has no pattern"):
        config_of("keyword", {"keywords": ["a"], "pattern": "b"})
    with pytest.raises(InvalidRequest, match="needs keywords"):
        config_of("keyword", {})
    with pytest.raises(InvalidRequest, match="needs a pattern"):
        config_of("regex", {"case_sensitive": True})
    assert config_of("sentiment", {}) == {"threshold": -0.5, "window": 3}
    assert config_of("sentiment", {"threshold": -1, "window": 2}) == {
        "threshold": -1.0,
        "window": 2,
    }
    with pytest.raises(InvalidRequest):
        _rule("keyword", keywords=["   "])
    with pytest.raises(InvalidRequest):
        _rule("keyword", keywords=["x" * 101])


def test_vader_scores_are_what_the_thresholds_assume() -> None:
    """The pinned lexicon's scores (a new vaderSentiment would move them)."""
    assert sentiment.compound("absolutely terrible service") == pytest.approx(-0.5256)
    assert sentiment.compound("not bad at all") == pytest.approx(0.431)
    assert sentiment.compound("thank you so much") > 0.3


NEGATIVE = "This is terrible, I hate it"
POSITIVE = "Great, thank you so much"
NEUTRAL = "the order number is on the letter"


def _fires(rule: CompiledRule, texts: list[tuple[str, str]]) -> list[int]:
    """The seqs at which ``rule`` fires over finals (speaker, text), fed one by one."""
    history: list[Final] = []
    fired = []
    for seq, (speaker, text) in enumerate(texts, 1):
        final = _final(text, seq, speaker)
        history.append(final)
        fired += [f.seq for f, _ in sentiment.crossings(rule, history, [final])]
    return fired


def test_sentiment_fires_on_the_crossing_only() -> None:
    """The mean of the last two finals falls below the threshold at seq 4, stays
    there (no new alert), rises above it, and falls again (a new alert)."""
    rule = _rule("sentiment", threshold=-0.5, window=2)
    texts = [POSITIVE, NEUTRAL, NEGATIVE, NEGATIVE, NEGATIVE, POSITIVE, POSITIVE]
    texts += [NEGATIVE, NEGATIVE]
    assert _fires(rule, [("user", t) for t in texts]) == [4, 9]


def test_sentiment_windows_are_per_speaker() -> None:
    """The assistant's cheerful finals do not lift the user's window; a speaker
    filter keeps the other speaker out altogether."""
    texts = [("user", NEGATIVE), ("assistant", POSITIVE), ("user", NEGATIVE)]
    assert _fires(_rule("sentiment", threshold=-0.5, window=2), texts) == [1]
    assert _fires(_rule("sentiment", speaker="assistant", threshold=-0.5), texts) == []


def test_a_final_sent_again_replaces_its_segment_in_the_window() -> None:
    rule = _rule("sentiment", threshold=-0.5, window=2)
    history = [
        _final(POSITIVE, 1, segment="a"),
        _final(POSITIVE, 2, segment="b"),
        _final(NEGATIVE, 3, segment="b"),  # b corrected: the window is a, b(new)
    ]
    assert sentiment.crossings(rule, history, history[2:]) == []
    history.append(_final(NEGATIVE, 4, segment="c"))
    ((final, match),) = sentiment.crossings(rule, history, history[3:])
    assert final.seq == 4 and match.score is not None and match.score < -0.5


def test_one_batch_evaluates_every_rule() -> None:
    rules = [
        _rule("keyword", rule_id=1, keywords=["refund"]),
        _rule("regex", rule_id=2, pattern="re"),
    ]
    found = matches(rules, _final("a refund"))
    assert [(r.rule.id, m.matched) for r, m in found] == [(1, "refund"), (2, "re")]


def test_drafts_fire_once_per_rule_and_segment_and_are_numbered() -> None:
    drafts = [
        AlertDraft(1, "id:a", {}, 5),
        AlertDraft(1, "id:a", {}, 5),
        AlertDraft(2, "id:a", {}, 5),
    ]
    fresh = new_firings(drafts, {(2, "id:a")})
    assert fresh == [drafts[0]]
    events = numbered([*fresh, drafts[2]], before=4)
    assert [e.data["number"] for e in events] == [5, 6]
    assert {e.type for e in events} == {"alert"}


def _cpu(call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        call()
        best = min(best, time.process_time() - began)
    return best


def test_keyword_rules_cost_linear_time_whatever_the_phrases() -> None:
    """Fifty phrases of fifty words against 16 KiB of their common prefix: Python's
    ``re`` tried every phrase at every word (0.4 s of the event loop); RE2's DFA
    reads the text once, a small multiple of one short keyword's cost."""
    ends = list("bcdefghijklmnopqrstuvwxyz0123456789éèêëîïôöûüçñßøå")[:50]
    worst = _rule("keyword", keywords=[("a " * 49) + c for c in ends])
    plain = _rule("keyword", keywords=["refund", "chargeback"])
    text = "a " * 8192
    assert _matched(worst, text) is None
    reference = max(_cpu(lambda: _matched(plain, text)), 1e-4)
    assert _cpu(lambda: _matched(worst, text)) <= 100 * reference


def test_keywords_keep_unicode_word_edges() -> None:
    rule = _rule("keyword", keywords=["café", "c++"])
    assert _matched(rule, "deux cafés") is None
    assert _matched(rule, "un CAFÉ, merci") == "CAFÉ"
    assert _matched(rule, "I write C++.") == "C++"


def test_sentiment_scores_a_long_final_in_bounded_time() -> None:
    """VADER's cost grows faster than its text (16 KiB took half a second): a
    final is scored on its last ``SCORED_CHARS`` characters."""
    words = [
        "this",
        "is",
        "terrible",
        "awful",
        "bad",
        "service",
        "not",
        "good",
        "but",
        "I",
        "love",
        "it",
        "never",
        "again",
    ]
    rnd = random.Random(7)
    long = " ".join(rnd.choice(words) for _ in range(4000))[:16_384]
    short = " ".join(rnd.choice(words) for _ in range(400))[: sentiment.SCORED_CHARS]
    sentiment.analyzer()
    slow = _cpu(lambda: sentiment.compound(long + str(rnd.random())))  # new to the cache
    assert slow <= 4 * _cpu(lambda: sentiment._compound.__wrapped__(short))
    tail = long[-sentiment.SCORED_CHARS :]
    assert sentiment.compound(long) == sentiment.compound(tail[tail.index(" ") + 1 :])


@pytest.mark.parametrize("pattern", [r"(.{0,50}a){5}x", r"(a|b|c|d).{0,300}x"])
def test_a_pattern_too_slow_for_every_final_is_refused_when_made(pattern: str) -> None:
    # RE2 stays linear, but these outgrow its fast automaton: ~170 ms per 16 KiB.
    rule = _rule("regex", pattern=pattern)
    with pytest.raises(InvalidRequest, match="too slow"):
        check_cost(rule)


@pytest.mark.parametrize(
    "pattern",
    [r"(?i)\b(speak|talk) to (a |the )?(manager|supervisor)\b", r"\pL+(\s+\pL+){0,5}x", r"\d{16}"],
)
def test_ordinary_patterns_pass_the_cost_check(pattern: str) -> None:
    check_cost(_rule("regex", pattern=pattern))
