"""Reconnection delays: exponential, bounded, with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["DEFAULT_BACKOFF", "Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before reconnection attempt ``n`` (1, 2, ...).

    The ceiling doubles (``factor``) from ``initial`` up to ``maximum``; the
    delay is drawn between half the ceiling and the ceiling, so clients that
    lost the same server do not come back in step. ``max_attempts`` failed
    attempts in a row end the stream with ``ReconnectFailed`` (None: keep
    trying); a connection that opens resets the count.
    """

    initial: float = 0.25
    maximum: float = 10.0
    factor: float = 2.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None)")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt`` (the first retry is 1)."""
        ceiling = self.initial
        for _ in range(max(attempt - 1, 0)):  # no power: factor ** 1024 overflows a float
            if ceiling >= self.maximum or self.factor == 1:
                break
            ceiling *= self.factor
        ceiling = min(ceiling, self.maximum)
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def exhausted(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts in a row are too many."""
        return self.max_attempts is not None and failures >= self.max_attempts


#: The default: 0.25 s doubling to 10 s between attempts, forever.
DEFAULT_BACKOFF = Backoff()
