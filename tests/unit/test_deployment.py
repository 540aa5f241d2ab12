"""Settings that would let nodes disagree are refused before anything starts."""

from __future__ import annotations

import pytest

from scribeline.config import Settings
from scribeline.deployment import DeploymentError, check

PG = "postgresql://scribe@db.internal/scribeline"
REDIS = "redis://cache.internal:6379/0"


def settings(**fields: str) -> Settings:
    return Settings(**fields)  # type: ignore[arg-type]


def test_one_node_on_the_embedded_defaults_is_fine() -> None:
    """``make run``'s configuration passes, with any number of... one worker."""
    check(settings())


def test_a_shared_broker_needs_a_shared_store() -> None:
    """Redis with SQLite would fan out events whose history other nodes cannot read."""
    with pytest.raises(DeploymentError, match="SCRIBELINE_DATABASE_URL=postgresql"):
        check(settings(broker_url=REDIS))


def test_a_shared_broker_needs_a_configured_token_secret() -> None:
    """A generated secret is per node: tokens minted on one would fail on another."""
    with pytest.raises(DeploymentError, match="SCRIBELINE_TOKEN_SECRET"):
        check(settings(broker_url=REDIS, database_url=PG))
    check(settings(broker_url=REDIS, database_url=PG, token_secret="s" * 32))


@pytest.mark.parametrize(
    "fields",
    [{}, {"database_url": PG}, {"broker_url": REDIS, "token_secret": "s" * 32}],
)
def test_workers_need_a_shared_store_and_broker(fields: dict[str, str]) -> None:
    """``--workers 2`` without both shared backends is refused with what to set."""
    with pytest.raises(DeploymentError, match="--workers 2"):
        check(settings(**fields), workers=2)


def test_workers_with_shared_backends_are_fine() -> None:
    check(settings(broker_url=REDIS, database_url=PG, token_secret="s" * 32), workers=4)


def test_the_message_never_carries_the_urls() -> None:
    """URLs may hold passwords: refusals name the variable, never its value."""
    url = "postgresql://scribe:hunter2@db/scribeline"
    with pytest.raises(DeploymentError) as err:
        check(settings(broker_url="redis://:hunter2@cache/0", database_url=url))
    assert "hunter2" not in str(err.value)
