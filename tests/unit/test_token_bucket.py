"""The per-connection message rate limit."""

from __future__ import annotations

from scribeline.connection import TokenBucket


def test_bucket_allows_a_burst_of_its_rate_then_refuses() -> None:
    """At most `rate` messages pass at once; the next one is refused."""
    bucket = TokenBucket(100)
    assert all(bucket.take() for _ in range(100))
    assert not bucket.take()


def test_reserve_borrows_and_says_how_long_to_wait() -> None:
    """Past the burst, reserve() hands out tokens due one interval apart."""
    bucket = TokenBucket(10)
    assert all(bucket.reserve() == 0.0 for _ in range(10))
    first, second = bucket.reserve(), bucket.reserve()
    assert 0.05 < first <= 0.1
    assert 0.15 < second <= 0.2
