"""PII redaction (``scribeline.redaction``): the hard cases one by one, and the
measured precision and recall on the labelled corpus (tests/data)."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import pytest

from scribeline.ingest.models import UpdateOrganization
from scribeline.redaction import _CHECKS, KINDS, PLACEHOLDERS, find, redact

DATA = Path(__file__).parent.parent / "data"
ALL = frozenset(KINDS)
DEFAULT = frozenset({"card", "ssn", "email", "phone"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card is 4111 1111 1111 1111.", "my card is [CARD]."),
        (
            "it's four two four two, four two four two, four two four two, four two four two",
            "it's [CARD]",
        ),
        (
            "five five five five double five five five double five five five four four four four",
            "[CARD]",
        ),
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),  # fails Luhn
        ("the card ending in 1234", "the card ending in 1234"),
        ("my social is 123-45-6789", "my social is [SSN]"),
        ("ssn one two three four five six seven eight nine", "ssn [SSN]"),
        ("case 123456789", "case 123456789"),  # 9 digits, no context, not grouped 3-2-4
        ("jane dot doe at gmail dot com", "[EMAIL]"),
        ("write to jane.doe@gmail.com today", "write to [EMAIL] today"),
        ("I'll be there at around five", "I'll be there at around five"),
        ("check acme dot com", "check acme dot com"),
        ("call (415) 867-5309", "call [PHONE]"),
        ("four one five, eight six seven, five three oh nine", "[PHONE]"),
        ("on +44 20 7946 0958", "on [PHONE]"),
        ("press one for sales", "press one for sales"),
        ("call 911", "call 911"),
        ("my pin is one two three four", "my pin is one two three four"),
        (
            "it was $1,250.00 in 2019 at 10:30 on 12/05/2024",
            "it was $1,250.00 in 2019 at 10:30 on 12/05/2024",
        ),
        ("oh no, double check it", "oh no, double check it"),
        ("phone 415 867 5309 card 4111 1111 1111 1111", "phone [PHONE] card [CARD]"),
        ("415 867 5309 4111 1111 1111 1111", "[PHONE] [CARD]"),  # one run, two entities
    ],
)
def test_hard_cases(text: str, expected: str) -> None:
    assert redact(text, DEFAULT).text == expected


def test_digits_kind_takes_other_long_runs_only_when_on() -> None:
    text = "order 7734 2219 8841, card 4111 1111 1111 1112, zip 94107"
    assert redact(text, DEFAULT).text == text
    done = redact(text, ALL)
    assert done.text == "order [NUMBER], card [NUMBER], zip 94107"
    assert done.counts == {"digits": 2}


def test_only_the_kinds_asked_for_and_counts() -> None:
    text = "card 4111 1111 1111 1111, mail a.b@c.io, call 415-867-5309"
    assert (
        redact(text, {"email"}).text == "card 4111 1111 1111 1111, mail [EMAIL], call 415-867-5309"
    )
    done = redact(text, DEFAULT)
    assert done.text == "card [CARD], mail [EMAIL], call [PHONE]"
    assert done.counts == {"card": 1, "email": 1, "phone": 1}
    assert redact(text, ()).text == text
    assert redact(text, ()).counts == {}


def test_the_api_takes_exactly_the_kinds_there_are() -> None:
    field = UpdateOrganization.model_fields["redaction"].annotation
    (listed,) = [a for a in get_args(field) if a is not type(None)]
    (literal,) = get_args(get_args(listed)[0])
    assert set(get_args(literal)) == set(KINDS) == set(PLACEHOLDERS)


# -- the corpus ----------------------------------------------------------------------


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score(name: str, kinds: frozenset[str]) -> dict[str, Score]:
    """Entity-level scores per kind: a labelled entity is found when a span of its
    kind overlaps it; any other span is a false positive (a labelled entity of a
    kind that is off must be left alone)."""
    scores = {kind: Score() for kind in KINDS}
    for line in (DATA / name).read_text().splitlines():
        item = json.loads(line)
        text = item["text"]
        spans = find(text, kinds)
        matched: set[int] = set()
        for kind, entity in item["pii"]:
            start = text.index(entity)
            end = start + len(entity)
            hits = [i for i, s in enumerate(spans) if s.start < end and start < s.end]
            good = [i for i in hits if spans[i].kind == kind]
            if kind in kinds:
                scores[kind].tp += bool(good)
                scores[kind].fn += not good
                matched.update(good)
        for i, span in enumerate(spans):
            scores[span.kind].fp += i not in matched
    return scores


def overall(scores: dict[str, Score]) -> Score:
    return Score(*(sum(getattr(s, f) for s in scores.values()) for f in ("tp", "fp", "fn")))


def report(title: str, scores: dict[str, Score]) -> None:
    print(f"\n{title}")
    for kind, s in [*scores.items(), ("overall", overall(scores))]:
        print(
            f"  {kind:8} precision {s.precision:.3f}  recall {s.recall:.3f}  ({s.tp}/{s.fp}/{s.fn})"
        )


def test_corpus_is_large_and_labelled() -> None:
    lines = (DATA / "redaction_corpus.jsonl").read_text().splitlines()
    assert len(lines) >= 200
    labelled = [json.loads(line)["pii"] for line in lines]
    for kind in KINDS:
        assert sum(k == kind for pii in labelled for k, _ in pii) >= 15, kind


@pytest.mark.parametrize("kinds", [ALL, DEFAULT], ids=["all", "without-digits"])
def test_precision_and_recall_on_the_corpus(kinds: frozenset[str]) -> None:
    scores = score("redaction_corpus.jsonl", kinds)
    report(f"corpus, kinds {sorted(kinds)} (tp/fp/fn)", scores)
    total = overall(scores)
    assert total.precision >= 0.95 and total.recall >= 0.9
    for kind in kinds:
        assert scores[kind].precision >= 0.9 and scores[kind].recall >= 0.9, kind


def test_held_out_lines_written_after_the_rules() -> None:
    """A smaller set written once the rules existed, never tuned on: its figures are
    the less flattering ones the docs quote beside the corpus's."""
    scores = score("redaction_heldout.jsonl", ALL)
    report("held-out lines, every kind (tp/fp/fn)", scores)
    total = overall(scores)
    assert total.precision >= 0.8 and total.recall >= 0.9


# -- the cost of the worst text ----------------------------------------------------

MAX_TEXT = 16_384  # a transcript's longest content (ingest/models.py)


def _fill(piece: str, sep: str = " ") -> str:
    return sep.join([piece] * (MAX_TEXT // (len(piece) + len(sep)) + 1))[:MAX_TEXT]


def _groups(size: int, sep: str) -> str:
    """Random groups of ``size`` digits: numbers the phone metadata's cache has not seen."""
    rnd = random.Random(size)
    count = MAX_TEXT // (size + len(sep)) + 1
    return sep.join(f"{rnd.randrange(10**size):0{size}}" for _ in range(count))[:MAX_TEXT]


def _cpu(text: str, at_most: float = float("inf")) -> float:
    """The least process CPU of up to three redactions of ``text`` (stops early
    once under ``at_most``: a slow machine gets more tries, not more slack)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        redact(text, ALL)
        best = min(best, time.process_time() - start)
        if best <= at_most:
            break
    return best


@pytest.mark.parametrize(
    "text",
    [
        "4" * MAX_TEXT,  # one written number
        "a" * MAX_TEXT,
        _fill("7", "."),  # 7.7.7.7...: address characters, written
        _fill("a", "."),
        _fill("a", "'"),
        _fill("one", " dot "),  # a spoken address that never ends
        _fill("x at y", " dot "),
        _fill("7"),  # single digits: one growing group
        _groups(2, " "),
        _groups(3, "-"),
        _groups(4, ", "),
        _groups(5, " "),
        _fill("+4158"),
        _fill("four one five"),
        _fill("oh"),
    ],
    ids=lambda t: repr(t[:12]),
)
def test_the_worst_text_costs_a_few_times_prose(text: str) -> None:
    """Redaction runs on the event loop: 16 KiB of digits or address characters
    must cost a small multiple of 16 KiB of transcript prose, not seconds (the
    email patterns once backtracked quadratically, and every digit group of a
    long run was checked against Luhn and phone metadata)."""
    lines = (DATA / "redaction_corpus.jsonl").read_text().splitlines()
    prose = " ".join(
        t for t in (json.loads(line)["text"] for line in lines) if not any(c.isdigit() for c in t)
    )
    prose = (prose + " ") * (MAX_TEXT // len(prose) + 1)
    reference = _cpu(prose[:MAX_TEXT])
    assert _cpu(text, 8 * reference) <= 8 * reference


def test_a_text_of_many_numbers_is_checked_up_to_a_bound_then_redacted_unchecked() -> None:
    """Past ``_CHECKS`` numbers a text's numbers are ``[NUMBER]`` even when
    ``digits`` is off: long texts cost bounded work and still leak nothing."""
    phones = [f"call 415 867 {5300 + i:04}" for i in range(_CHECKS + 20)]
    done = redact(", ".join(phones), DEFAULT)
    assert done.counts == {"phone": _CHECKS, "digits": 20}
    assert not any(c.isdigit() for c in done.text)
    cards = redact("4111 1111 1111 1111 " * 3, {"card"})
    assert cards.counts == {"card": 3}  # a usual text is far from the bound
