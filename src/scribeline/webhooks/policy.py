"""When to try a delivery again, and when to give up. Pure.

Attempt ``n`` (1, 2, ...) that failed is tried again after ``base * 2**(n-1)``
seconds, at most ``cap``, each wait moved by up to a fifth either way (jitter:
endpoints that failed together do not all come back at the same moment). A
delivery is retried until ``window`` has passed since its event (a day by
default: about 20 attempts); it is then ``dead``. An endpoint whose deliveries
have failed without a success for ``disable_after`` is disabled when one of
them dies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["JITTER", "Policy"]

#: The part of a wait that jitter may add or take away.
JITTER = 0.2


@dataclass(frozen=True, slots=True)
class Policy:
    """Retry and disabling, in milliseconds."""

    base_ms: int = 5_000
    cap_ms: int = 7_200_000
    window_ms: int = 86_400_000
    disable_after_ms: int = 86_400_000

    def delay(self, attempts: int, rng: random.Random | None = None) -> int:
        """Milliseconds to wait after the ``attempts``-th attempt failed."""
        exponent = min(max(attempts, 1) - 1, 40)
        wait = min(self.base_ms << exponent, self.cap_ms)
        spread: float = (rng or random).uniform(-JITTER, JITTER)
        return max(1, round(wait * (1 + spread)))

    def gives_up(self, created_at: int, now: int) -> bool:
        """Whether a delivery of an event stored at ``created_at`` has had its time."""
        return now - created_at >= self.window_ms

    def disables(self, failing_since: int | None, now: int) -> bool:
        """Whether an endpoint failing since ``failing_since`` is to be disabled
        (asked when one of its deliveries dies)."""
        return failing_since is not None and now - failing_since >= self.disable_after_ms
