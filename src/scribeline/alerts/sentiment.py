"""Negative sentiment over a speaker's last finals: VADER (vaderSentiment), a
lexicon that ships in the package and runs offline.

A sentiment rule fires on the final at which the mean compound score of the
speaker's last ``window`` finals (that final included) falls to ``threshold``
or below, when the mean of the ``window`` before it was above it (or it is
the speaker's first final): once per crossing, not on every later final
while the mood stays low. A final sent again under the same segment id
replaces the earlier one in the window.

The window is made of what is stored up to the final's seq (read back at most
``LOOKBACK`` events), so any node that evaluates a final judges it the same
way: seqs below a committed seq are committed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from statistics import fmean

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from scribeline.alerts.rules import MATCHED_CHARS, CompiledRule, Final, Match, segment_key

__all__ = ["LOOKBACK", "SCORED_CHARS", "analyzer", "compound", "crossings"]

#: Events read back before a batch's first final to fill the windows: a speaker
#: whose previous finals are further back starts a shorter window.
LOOKBACK = 256


@functools.cache
def analyzer() -> SentimentIntensityAnalyzer:
    """The analyzer (it reads its lexicon once, about 0.3 s: load it off the loop)."""
    return SentimentIntensityAnalyzer()


#: Characters of a final that are scored: its last ones, from a word's start.
#: VADER's cost grows faster than its text (16 KiB took half a second of the
#: event loop, 1,000 characters a few ms), and the cache then holds short keys.
SCORED_CHARS = 1000


def compound(text: str) -> float:
    """VADER's compound score of ``text`` (its last ``SCORED_CHARS``), from -1
    (negative) to 1 (positive)."""
    if len(text) > SCORED_CHARS:
        space = text.find(" ", len(text) - SCORED_CHARS - 1)
        text = text[space + 1 :] if space >= 0 else text[-SCORED_CHARS:]
    return _compound(text)


@functools.lru_cache(maxsize=4096)
def _compound(text: str) -> float:
    return float(analyzer().polarity_scores(text)["compound"])


def _window_means(
    history: Sequence[Final], final: Final, window: int
) -> tuple[float, float | None] | None:
    """The mean over the speaker's last ``window`` finals up to ``final``, and
    over the ``window`` before it (None: it is the speaker's first); None if
    ``history`` lacks ``final``. Read backwards from ``final``: the latest
    final of each segment counts."""
    seen: set[str] = set()
    texts: list[str] = []
    for earlier in reversed(history):
        if earlier.seq > final.seq or earlier.speaker != final.speaker:
            continue
        key = segment_key(earlier)
        if key in seen:
            continue  # replaced by a later final of its segment
        seen.add(key)
        texts.append(earlier.text)
        if len(texts) > window:
            break
    if not texts:
        return None
    now = fmean(compound(t) for t in texts[:window])
    before = texts[1 : window + 1]
    return now, fmean(compound(t) for t in before) if before else None


def crossings(
    rule: CompiledRule, history: Sequence[Final], batch: Sequence[Final]
) -> list[tuple[Final, Match]]:
    """The finals of ``batch`` at which the sentiment ``rule`` fires. ``history``
    holds the finals stored before and in the batch, in seq order."""
    threshold = float(rule.rule.config["threshold"])
    window = int(rule.rule.config["window"])
    fired = []
    for final in batch:
        if not rule.applies_to(final):
            continue
        means = _window_means(history, final, window)
        if means is None:
            continue
        now, before = means
        if now <= threshold and (before is None or before > threshold):
            fired.append((final, Match(final.text[:MATCHED_CHARS], round(now, 4))))
    return fired
