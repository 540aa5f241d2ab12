"""Several Scribeline nodes sharing one PostgreSQL database and one Redis.

Each node is a real ``scribeline serve`` subprocess with its own data
directory (as if on its own machine) and the same database URL, broker URL and
token secret. Tests kill, stop and restart nodes, Redis and PostgreSQL, and
talk to every node over real sockets.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.helpers import ServerProcess, Tenant

__all__ = ["Cluster", "running_cluster"]


@dataclass
class Cluster:
    """``size`` nodes on ``database_url`` and ``broker_url``; node 0 runs the admin CLI."""

    root: Path
    database_url: str
    broker_url: str
    size: int = 3
    env: dict[str, str] = field(default_factory=dict)
    nodes: list[ServerProcess] = field(default_factory=list)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def database(self) -> str:
        """The PostgreSQL database's name (the URL's last part)."""
        return self.database_url.rsplit("/", 1)[-1]

    def node_env(self) -> dict[str, str]:
        return {
            "SCRIBELINE_DATABASE_URL": self.database_url,
            "SCRIBELINE_BROKER_URL": self.broker_url,
            "SCRIBELINE_TOKEN_SECRET": self.secret,
            **self.env,
        }

    def start(self) -> Cluster:
        for number in range(self.size):
            self.nodes.append(self._start_node(number))
        return self

    def _start_node(self, number: int) -> ServerProcess:
        node = ServerProcess(
            data_dir=self.root / f"node{number}" / "data", env_overrides=self.node_env()
        )
        node.start()
        return node

    def restart(self, number: int) -> ServerProcess:
        """Start node ``number`` again (after a stop or a kill), on a new port."""
        self.nodes[number].kill()
        self.nodes[number] = self._start_node(number)
        return self.nodes[number]

    def stop(self) -> None:
        for node in self.nodes:
            try:
                node.stop()
            except Exception:
                node.kill()

    def create_tenant(self, org: str) -> Tenant:
        """An organization with read-write, read and write keys (through node 0's CLI)."""
        return self.nodes[0].create_tenant(org)


@contextmanager
def running_cluster(
    root: Path,
    database_url: str,
    broker_url: str,
    size: int = 3,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    cluster = Cluster(root, database_url, broker_url, size, dict(env or {}))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
