"""PII redaction of transcript text: pure, no I/O.

``redact(text, kinds)`` replaces what it finds of each kind that is on with a
typed placeholder (``PLACEHOLDERS``). Emails are found by pattern, written
(``jane.doe@gmail.com``) or spoken (``jane dot doe at gmail dot com``). Numbers
are found as *digit runs*: written digits and spoken ones (``zero``, ``oh``,
``one`` ... ``nine``, ``double five``, ``triple oh``), mixed, with separators
(``, - . ( )``, ``dash``) and fillers (``uh``, ``um``) inside, the way
speech-to-text writes a number read aloud. A run is then classified by its
length, its checksum and the words before it:

* ``card``: 13 to 19 digits, not starting with 0, that pass the Luhn check
  (python-stdnum);
* ``ssn``: 9 digits after "social" or "SSN", or grouped 3-2-4 with a valid
  area, group and serial;
* ``phone``: a number that ``phonenumbers`` calls valid (US, or international
  after ``+``/``plus``; a national number of 10 or 11 digits starting with 0
  after "phone", "call", "reach", ...);
* ``digits``: any other run of at least ``MIN_DIGITS`` digits (account, order
  and ticket numbers, a card number that fails Luhn). Off unless asked for.

Amounts (``$1,250.00``, ``49.99``), times (``10:30``), dates (``12/05/2024``),
and anything glued to letters (``3rd``, ``SAVE20``) are never digit runs.
A run that is not one entity as a whole is tried group by group (a phone
number and a card number read one after the other).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import phonenumbers
from stdnum import luhn

__all__ = [
    "KINDS",
    "MIN_DIGITS",
    "PLACEHOLDERS",
    "Redacted",
    "Span",
    "find",
    "redact",
]

#: The entity kinds, in the order they are tried on a digit run.
KINDS = ("card", "ssn", "email", "phone", "digits")

PLACEHOLDERS = {
    "card": "[CARD]",
    "ssn": "[SSN]",
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "digits": "[NUMBER]",
}

#: The shortest run of digits that the ``digits`` kind redacts (a PIN, a ZIP
#: code, a year and a card's last four are shorter).
MIN_DIGITS = 6

#: The most digits an entity has (a card number).
_MAX_ENTITY = 19

#: How far back (characters) a context word counts.
_CONTEXT = 40

#: How many numbers of 7 or more digits one text has checked (Luhn, SSN shape,
#: phone metadata: tens of µs each). Past it a number is redacted unchecked, as
#: ``[NUMBER]``, whatever kinds are on: a 16 KiB text of digits then costs a few
#: times what 16 KiB of prose does, and never leaks for being long.
_CHECKS = 128
_UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class Span:
    """What was found: ``text[start:end]`` is an entity of ``kind``."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Redacted:
    """The text with every entity replaced, and how many of each kind."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


def redact(text: str, kinds: Collection[str]) -> Redacted:
    """``text`` with the entities of ``kinds`` replaced by their placeholders."""
    if not kinds:
        return Redacted(text)
    spans = find(text, kinds)
    if not spans:
        return Redacted(text)
    parts: list[str] = []
    counts: dict[str, int] = {}
    at = 0
    for span in spans:
        parts += (text[at : span.start], PLACEHOLDERS[span.kind])
        counts[span.kind] = counts.get(span.kind, 0) + 1
        at = span.end
    parts.append(text[at:])
    return Redacted("".join(parts), counts)


def find(text: str, kinds: Collection[str]) -> list[Span]:
    """The entities of ``kinds`` in ``text``, in order, not overlapping."""
    emails = list(_emails(text))
    spans = [s for s in emails if "email" in kinds]
    numeric = set(kinds) - {"email"}
    if numeric:
        budget = _Budget()
        for run in _runs(text, emails):
            for s in _classify(text, run, budget):
                if s.kind == _UNCHECKED:
                    spans.append(Span("digits", s.start, s.end))
                elif s.kind in numeric:
                    spans.append(s)
    return sorted(spans, key=lambda s: s.start)


# -- emails ----------------------------------------------------------------------

_TLD = (
    "com|org|net|edu|gov|mil|int|io|co|uk|us|ca|au|nz|ie|de|fr|es|it|nl|be|ch|at|se|no"
    "|dk|fi|pl|pt|br|mx|in|jp|cn|info|biz|me|fm|ai|app|dev|tv|ly"
)
# Every repetition is bounded and a written address starts only where a run of
# address characters starts: each position of the text is then read a bounded
# number of times (unbounded ones made 16 KiB of digits cost seconds).
_WRITTEN_EMAIL = re.compile(
    r"(?<![\w.+'-])[\w.+'-]{0,63}\w@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}\b"
)
_SEP = r"(?:\s{1,3}(?:dot|underscore|dash|hyphen)\s{1,3}|[._-])"
_WORD = r"[a-z0-9][a-z0-9'+]{0,40}"
_LABEL = r"[a-z0-9-]{1,63}"
_SPOKEN_EMAIL = re.compile(
    rf"\b(?P<local>{_WORD}(?:{_SEP}{_WORD}){{0,8}})"
    rf"\s{{1,3}}at\s{{1,3}}{_LABEL}(?:\s{{1,3}}{_LABEL})?(?:(?:\s{{1,3}}dot\s{{1,3}}|\.){_LABEL}){{0,6}}"
    rf"(?:\s{{1,3}}dot\s{{1,3}}|\.)(?:{_TLD})\b",
    re.IGNORECASE,
)
#: Words before "at" that are not an address's local part ("looked at acme.com").
_NOT_LOCAL_WORDS = (
    "i i'm im me we us you he she him her it they them is am are was were be been"
    " look looked looking meet meeting meets call reach email mail here there home work"
    " office store out up back go going went sign signed log logged shop check checked"
    " based located available that this site website online stay staying arrive arrived"
)
_NOT_LOCAL = frozenset(_NOT_LOCAL_WORDS.split())


def _emails(text: str) -> Iterator[Span]:
    found = [(m.start(), m.end()) for m in _WRITTEN_EMAIL.finditer(text)]
    for m in _SPOKEN_EMAIL.finditer(text):
        local = m.group("local")
        if local.lower() in _NOT_LOCAL or any(s < m.end() and m.start() < e for s, e in found):
            continue
        found.append((m.start(), m.end()))
    for start, end in sorted(found):
        yield Span("email", start, end)


# -- digit runs ------------------------------------------------------------------

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_REPEAT = {"double": 2, "triple": 3}
#: Words and marks a digit run may hold between its digits.
_FILLERS = frozenset(("uh", "um", "er", "ah", "dash", "hyphen"))
_MARKS = frozenset(",-.()")
_TOKEN = re.compile(r"\d+(?:[-.,/:]\d+)*|[A-Za-z]+(?:'[A-Za-z]+)?|\S")
_GROUP_MARKS = re.compile(r"[-.,]")
_AMOUNT = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+(?:\.\d+){3}")


@dataclass(slots=True)
class _Run:
    """Digits read in a row: each group's digits and where it lies in the text."""

    start: int
    intl: bool = False
    groups: list[tuple[str, int, int]] = field(default_factory=list)
    #: The last group's digits while it grows, joined by ``close`` (adding to a
    #: string digit by digit is quadratic in a long run), and where it lies.
    tail: list[str] = field(default_factory=list)
    tail_at: tuple[int, int] = (0, 0)

    def has_digits(self) -> bool:
        return bool(self.groups or self.tail)

    def add(self, digits: str, start: int, end: int) -> None:
        self.close()
        self.tail, self.tail_at = [digits], (start, end)

    def extend(self, digits: str, end: int) -> None:
        self.tail.append(digits)
        self.tail_at = (self.tail_at[0], end)

    def close(self) -> _Run:
        if self.tail:
            self.groups.append(("".join(self.tail), *self.tail_at))
            self.tail = []
        return self


def _written(text: str, start: int, end: int, token: str) -> list[str] | None:
    """The digit groups of a written number token; None if it is not a digit
    string (an amount, a time, a date, glued to letters)."""
    glued = (start > 0 and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha())
    if glued or ":" in token or "/" in token or _AMOUNT.fullmatch(token):
        return None
    if start > 0 and text[start - 1] in "$£€":
        return None
    return _GROUP_MARKS.split(token)


def _runs(text: str, masked: list[Span]) -> Iterator[_Run]:
    """The digit runs of ``text`` outside the ``masked`` spans."""
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
    starts = [s.start for s in masked]  # sorted, not overlapping
    run: _Run | None = None
    joined = False  # a separator since the run's last digits: the next ones start a group
    i = 0
    while i < len(tokens):
        start, end, token = tokens[i]
        word = token.lower()
        pieces: list[str] | None = None
        step = 1
        at = bisect.bisect_right(starts, start) - 1
        if at >= 0 and start < masked[at].end:
            pieces = None
        elif token[0].isdigit():
            pieces = _written(text, start, end, token)
        elif word in _REPEAT and i + 1 < len(tokens):
            after = tokens[i + 1][2].lower()
            if after in _DIGIT_WORDS:
                pieces, step = [_DIGIT_WORDS[after] * _REPEAT[word]], 2
            elif after.isdigit() and len(after) == 1:
                pieces, step = [after * _REPEAT[word]], 2
        elif word in _DIGIT_WORDS and (word not in ("oh", "o") or _near_digit(tokens, i, run)):
            pieces = [_DIGIT_WORDS[word]]
        elif run is None and word in ("+", "plus", "("):
            if _next_is_digit(tokens, i):
                run = _Run(start, intl=word != "(")
            i += 1
            continue
        elif run is not None and (word in _FILLERS or word in _MARKS):
            joined = joined or word not in ("uh", "um", "er", "ah")
            i += 1
            continue
        if pieces is None:
            if run is not None and run.has_digits():
                yield run.close()
            run = None
            i += 1
            continue
        end = tokens[i + step - 1][1]
        if run is None:
            run = _Run(start)
        # A written number of several digits is a group of its own (``536 22 1234``);
        # spoken digits and single written ones group until a separator.
        multi = token[0].isdigit() and len(token) > 1
        for n, piece in enumerate(pieces):
            if joined or multi or n > 0 or not run.has_digits():
                run.add(piece, start, end)
            else:
                run.extend(piece, end)
            joined = False
        joined = multi
        i += step
    if run is not None and run.has_digits():
        yield run.close()


def _is_digit_token(token: str) -> bool:
    word = token.lower()
    return token[0].isdigit() or (word in _DIGIT_WORDS and word not in ("oh", "o"))


def _near_digit(tokens: list[tuple[int, int, str]], i: int, run: _Run | None) -> bool:
    """The words "oh" and "o" are zeros only beside other digits ("oh no" is not)."""
    return (run is not None and run.has_digits()) or _next_is_digit(tokens, i)


def _next_is_digit(tokens: list[tuple[int, int, str]], i: int) -> bool:
    for _, _, token in tokens[i + 1 : i + 4]:
        word = token.lower()
        if word in _MARKS or word in _FILLERS:
            continue
        return _is_digit_token(token) or word in ("oh", "o") or word in _REPEAT
    return False


# -- classifying a run -----------------------------------------------------------

_SSN_WORDS = re.compile(r"social|\bssn\b|\bs\.?\s?s\.?\s?n\b", re.IGNORECASE)
_PHONE_WORDS = re.compile(
    r"phone|number|\bcall|\bcell|mobile|\breach|\btext|\bfax|\bdial|\bline\b", re.IGNORECASE
)
#: A North American number's shape (area code and exchange start with 2-9), checked
#: before the costlier ``phonenumbers`` look-up.
_NANP = re.compile(r"1?[2-9]\d\d[2-9]\d{6}")
#: Where a national number that starts with a trunk 0 is tried.
_NATIONAL_REGIONS = ("GB", "IE", "AU", "DE", "FR")


@dataclass(slots=True)
class _Budget:
    """The checks a text has left (``_CHECKS``)."""

    checks: int = _CHECKS


def _classify(text: str, run: _Run, budget: _Budget) -> list[Span]:
    """The entities in ``run``: one for the whole run if it is one, else those
    found in its groups, left to right, longest first."""
    kind = _kind(text, run, 0, len(run.groups), budget)
    if kind not in (None, "digits") or len(run.groups) == 1:
        return [] if kind is None else [Span(kind, run.start, run.groups[-1][2])]
    spans: list[Span] = []
    i, rest = 0, None  # rest: the first group not in an entity found
    while i < len(run.groups):
        # No entity has more than 19 digits: j stops there (bounded work per group).
        last, size = i, 0
        while last < len(run.groups) and size + len(run.groups[last][0]) <= _MAX_ENTITY:
            size += len(run.groups[last][0])
            last += 1
        found: tuple[str, int] | None = None
        for j in range(last, i, -1):
            if size < 7:  # then nothing is an entity but ``digits`` (_leftover's)
                break
            part = _kind(text, run, i, j, budget)
            if part == _UNCHECKED:
                first = i if rest is None else rest
                start = run.start if first == 0 else run.groups[first][1]
                return [*spans, Span(_UNCHECKED, start, run.groups[-1][2])]
            if part not in (None, "digits"):
                found = (part, j)
                break
            size -= len(run.groups[j - 1][0])
        if found is None:
            rest = i if rest is None else rest
            i += 1
            continue
        part, j = found
        if rest is not None:
            spans += _leftover(text, run, rest, i)
        start = run.start if i == 0 else run.groups[i][1]
        spans.append(Span(part, start, run.groups[j - 1][2]))
        i, rest = j, None
    if rest is not None:
        spans += _leftover(text, run, rest, len(run.groups))
    return spans


def _leftover(text: str, run: _Run, i: int, j: int) -> list[Span]:
    digits = "".join(g for g, _, _ in run.groups[i:j])
    if len(digits) < MIN_DIGITS:
        return []
    start = run.start if i == 0 else run.groups[i][1]
    return [Span("digits", start, run.groups[j - 1][2])]


def _kind(text: str, run: _Run, i: int, j: int, budget: _Budget) -> str | None:
    """The kind of groups ``i:j`` of ``run`` as one number (None: too short;
    ``_UNCHECKED`` once ``budget`` is spent)."""
    groups = run.groups[i:j]
    digits = "".join(g for g, _, _ in groups)
    n = len(digits)
    if n < 7:
        return "digits" if n >= MIN_DIGITS else None
    if budget.checks <= 0:
        return _UNCHECKED
    budget.checks -= 1
    start = run.start if i == 0 else groups[0][1]
    intl = run.intl and i == 0
    before = text[max(0, start - _CONTEXT) : start]
    if not intl and 13 <= n <= 19 and digits[0] != "0" and luhn.is_valid(digits):
        return "card"
    if not intl and n == 9 and _ssn(digits, [len(g) for g, _, _ in groups], before):
        return "ssn"
    if 7 <= n <= 15 and _phone(digits, intl, before):
        return "phone"
    return "digits" if n >= MIN_DIGITS else None


def _ssn(digits: str, lengths: list[int], before: str) -> bool:
    if _SSN_WORDS.search(before):
        return True
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    valid = area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
    return valid and lengths == [3, 2, 4]


def _phone(digits: str, intl: bool, before: str) -> bool:
    if intl:
        return _valid(f"+{digits}", None)
    if len(digits) in (10, 11) and _NANP.fullmatch(digits):
        return _valid(f"+1{digits[-10:]}", "US") or _valid(f"+1{digits[-10:]}", "CA")
    if len(digits) >= 10 and digits[0] == "0" and _PHONE_WORDS.search(before):
        return any(_valid(digits, region) for region in _NATIONAL_REGIONS)
    return False


@functools.lru_cache(maxsize=1024)
def _valid(number: str, region: str | None) -> bool:
    """Whether ``number`` is valid (in ``region``: checking one region of the 25
    that share +1 is far cheaper than finding which one it is)."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return False
    if region is None:
        return phonenumbers.is_valid_number(parsed)
    return phonenumbers.is_valid_number_for_region(parsed, region)
