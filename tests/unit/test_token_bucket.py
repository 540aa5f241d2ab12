"""The per-connection message rate limit."""

from __future__ import annotations

from scribeline.connection import TokenBucket


def test_bucket_allows_a_burst_of_its_rate_then_refuses() -> None:
    """At most `rate` messages pass at once; the next one is refused."""
    bucket = TokenBucket(100)
    assert all(bucket.take() for _ in range(100))
    assert not bucket.take()
