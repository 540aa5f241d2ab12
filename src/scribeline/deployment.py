"""What kind of deployment the settings describe, and the combinations refused.

One node runs on its own SQLite file and the in-process broker. Several nodes
(processes or machines) must share three things, or they silently disagree:
the store (every node reads every stream's history), the broker (an event
stored through one node reaches subscribers on another) and the token secret
(a token minted by one node is verified by every other). A node configured
half-way refuses to start with one line that says what to set.
"""

from __future__ import annotations

from scribeline.config import Settings

__all__ = ["DeploymentError", "check", "shared_broker", "shared_store"]

_SHARED_STORES = ("postgresql://", "postgres://", "postgresql+asyncpg://")


class DeploymentError(Exception):
    """Settings that cannot work together; the message is one line for the user."""


def shared_store(settings: Settings) -> bool:
    """Whether the store is shared by every node (PostgreSQL), not this node's SQLite."""
    return settings.database_url.startswith(_SHARED_STORES)


def shared_broker(settings: Settings) -> bool:
    """Whether the broker reaches other processes (anything but ``memory://``)."""
    return not settings.broker_url.startswith("memory://")


def check(settings: Settings, workers: int = 1) -> None:
    """Refuse settings that would let nodes disagree (see the module docstring)."""
    if workers < 1:
        raise DeploymentError("--workers must be at least 1")
    if workers > 1 and not (shared_store(settings) and shared_broker(settings)):
        raise DeploymentError(
            f"--workers {workers} runs {workers} processes, which must share a store and a"
            " broker: set SCRIBELINE_DATABASE_URL=postgresql://... and"
            " SCRIBELINE_BROKER_URL=redis://... (and SCRIBELINE_TOKEN_SECRET)"
        )
    if shared_broker(settings) and not shared_store(settings):
        raise DeploymentError(
            "SCRIBELINE_BROKER_URL names a shared broker, but the store is this node's own"
            " SQLite: set SCRIBELINE_DATABASE_URL=postgresql://... (the same on every node)"
        )
    if shared_broker(settings) and not settings.token_secret:
        raise DeploymentError(
            "a shared broker means several nodes, and each would generate its own token"
            " secret: set SCRIBELINE_TOKEN_SECRET to one value on every node"
        )
