"""Word error rate for speech tests, after normalising both texts the same way.

Engines write the same words differently ("8" or "eight", "it's" or "its",
"o'clock", "6:00"), so both texts are reduced to bare lower-case words first:

* lower case; apostrophes dropped ("it's" -> "its", "o'clock" -> "oclock"); hyphens
  split words ("twenty-two" -> "twenty two"); any other punctuation removed;
* numbers spelt out as words: 0-9999 as cardinals ("22" -> "twenty two", "1,200" ->
  "one thousand two hundred"); longer numbers, and any with a leading zero, digit by
  digit, the way order and phone numbers are said ("74291" -> "seven four two nine
  one"); ordinals ("22nd" -> "twenty second"); decimals ("2.5" -> "two point five");
  times ("6:00" -> "six oclock", "6:30" -> "six thirty"); "$5" -> "five dollars",
  "5%" -> "five percent"; digit groups joined by hyphens, or by two or more dots,
  digit by digit ("742-91", "7.429.1" -> "seven four two nine one");
* "ok" -> "okay", "good bye" -> "goodbye", "o clock" -> "oclock".

A known limit: a four-digit number said digit by digit ("four seven two nine")
does not match "4729" (spelt "four thousand seven hundred twenty nine"); say long
identifiers with five or more digits in fixtures.

The counting itself is jiwer's (Levenshtein over words).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import jiwer

__all__ = [
    "WordErrors",
    "normalize",
    "spell_number",
    "word_error_rate",
    "word_errors",
    "words_found",
]

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINAL = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_SAME = {"ok": "okay"}
_SAME_RUNS = {"good bye": "goodbye", "o clock": "oclock"}


def spell_number(digits: str) -> str:
    """Digits as words: a cardinal up to 9999, else (or with a leading 0) digit by digit."""
    if len(digits) > 4 or (len(digits) > 1 and digits.startswith("0")):
        return " ".join(_ONES[int(d)] for d in digits)
    return _cardinal(int(digits))


def _cardinal(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _cardinal(rest))
    rest = n % 1000
    return _cardinal(n // 1000) + " thousand" + ("" if rest == 0 else " " + _cardinal(rest))


def _ordinal(digits: str) -> str:
    words = spell_number(digits).split()
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _time(match: re.Match[str]) -> str:
    hours, minutes = match.group(1), match.group(2)
    if minutes == "00":
        tail = "oclock"
    elif minutes.startswith("0"):
        tail = "oh " + _ONES[int(minutes)]
    else:
        tail = _cardinal(int(minutes))
    return f" {_cardinal(int(hours))} {tail} "


def _digit_groups(match: re.Match[str]) -> str:
    return " " + " ".join(_ONES[int(d)] for d in match.group() if d.isdigit()) + " "


def _decimal(match: re.Match[str]) -> str:
    fraction = " ".join(_ONES[int(d)] for d in match.group(2))
    return f" {spell_number(match.group(1))} point {fraction} "


def normalize(text: str) -> list[str]:
    """``text`` as the bare words that are compared (see the module docstring)."""
    s = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 1,200 -> 1200
    s = re.sub(r"\b(\d{1,2}):(\d{2})\b", _time, s)
    s = re.sub(r"\$(\d+)", r"\1 dollars", s)
    s = re.sub(r"(\d+)\s*%", r"\1 percent", s)
    s = re.sub(r"\d+(?:-\d+)+|\d+(?:\.\d+){2,}", _digit_groups, s)
    s = re.sub(r"(\d+)\.(\d+)", _decimal, s)
    s = re.sub(r"(\d+)(?:st|nd|rd|th)\b", lambda m: f" {_ordinal(m[1])} ", s)
    s = re.sub(r"\d+", lambda m: f" {spell_number(m[0])} ", s)
    s = s.replace("'", "").replace("-", " ")
    s = re.sub(r"[^a-z ]+", " ", s)
    s = " ".join(_SAME.get(word, word) for word in s.split())
    for run, same in _SAME_RUNS.items():
        s = re.sub(rf"\b{run}\b", same, s)
    return s.split()


@dataclass(frozen=True, slots=True)
class WordErrors:
    """How ``hypothesis`` differs from ``reference``, counted in normalised words."""

    reference_words: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def rate(self) -> float:
        """(substitutions + deletions + insertions) / reference words."""
        errors = self.substitutions + self.deletions + self.insertions
        return errors / self.reference_words


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """The substitutions, deletions and insertions that turn ``reference`` into ``hypothesis``.

    Raises ``ValueError`` when ``reference`` has no words (the rate would be undefined).
    """
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        raise ValueError("the reference text has no words")
    if not hyp:
        return WordErrors(len(ref), 0, len(ref), 0)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return WordErrors(len(ref), out.substitutions, out.deletions, out.insertions)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` after normalisation (0.0 is perfect)."""
    return word_errors(reference, hypothesis).rate


def words_found(words: Iterable[str], hypothesis: str) -> list[str]:
    """Which of ``words`` (each normalised, e.g. "Okafor" or "6") occur in ``hypothesis``.

    For checking keywords, not exact text: a multi-word entry ("six oclock") must occur
    as a run of consecutive words.
    """
    hyp = " " + " ".join(normalize(hypothesis)) + " "
    found = []
    for word in words:
        wanted = " ".join(normalize(word))
        if wanted and f" {wanted} " in hyp:
            found.append(word)
    return found
