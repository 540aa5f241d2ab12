"""The cluster interface: what the nodes of a deployment agree on between them.

Four kinds of shared state, all of them leases or hints, never records
(storage is the record):

- **slots**: at most ``limit`` members hold a slot of a key at once, across
  every node (connections per call, per bot);
- **claims**: one member holds a key exclusively (the producer of a meeting
  bot); a new claim displaces the old holder, wherever it is, and that
  holder's ``on_lost`` runs on its own node;
- **turns**: at most one turn of a key per interval, across the cluster
  (campaign progress);
- **messages**: bytes to one node or to every node (a stop request for the
  node holding a producer, cache invalidations).

Contract (checked by ``tests/contract/test_cluster.py`` on every backend):
slots and claims are leases that the node holding them renews in the
background; a node that stops renewing (a crash) loses them once the lease
runs out, so its slots free themselves. ``close`` gives back everything the
node holds at once. Members are unique per node; the cluster qualifies them
with the node id, so two nodes may use the same member names. Messages are
delivered at most once and may be lost (a Redis restart): whoever needs an
answer waits for it with a timeout and has a fallback. A message for this
node, or for every node, reaches this node's ``on_message`` before ``send``
returns, even when the shared backend is unreachable.

When the shared backend is unreachable a node does not fail: it degrades to
what it knows alone (slots counted on this node, claims of this node, turns
of this node, messages to itself) and ``ping`` raises until it is back.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable

__all__ = [
    "Cluster",
    "ClusterDegraded",
    "OnLost",
    "OnMessage",
    "join_member",
    "new_node_id",
    "split_member",
]

#: Called with each message's payload that reaches this node.
OnMessage = Callable[[bytes], None]

#: Called, on the holder's node, when its claim is taken by another member.
OnLost = Callable[[], None]


class ClusterDegraded(Exception):
    """The shared backend cannot be reached: the node runs on node-local state."""


def new_node_id() -> str:
    """A node id unique to this process run: host, pid and a random part.

    A restarted process gets a new id, so nothing it held before (leases that
    have not yet run out) is mistaken for what it holds now.
    """
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def join_member(node_id: str, member: str) -> str:
    """A member's cluster-wide name."""
    return f"{node_id}/{member}"


def split_member(full: str) -> tuple[str, str]:
    """(node id, member) of a cluster-wide member name."""
    node_id, _, member = full.partition("/")
    return node_id, member


class Cluster(ABC):
    """Cluster-wide slots, claims, turns and messages between nodes."""

    #: This node's id (messages are addressed to it).
    node_id: str

    @abstractmethod
    async def start(self, on_message: OnMessage) -> None:
        """Start renewing leases and receiving messages; never fails for an
        unreachable backend (the node starts degraded and keeps retrying)."""

    @abstractmethod
    async def acquire(self, key: str, limit: int, member: str) -> bool:
        """Take one of ``key``'s ``limit`` slots for ``member``; False when all are taken.

        Taking a slot ``member`` already holds succeeds and takes nothing more.
        """

    @abstractmethod
    async def release(self, key: str, member: str) -> None:
        """Give back what ``member`` holds on ``key``: its slot, its claim (if it
        still holds it), or both. Never raises for an unreachable backend."""

    @abstractmethod
    async def claim(self, key: str, member: str, on_lost: OnLost) -> None:
        """Hold ``key`` exclusively, displacing its holder on any node.

        The displaced holder's ``on_lost`` runs on its node: at once on this
        node, by message on another (or, if that message is lost, when that
        node next renews its lease). ``on_lost`` must not block.
        """

    @abstractmethod
    async def owner(self, key: str) -> str | None:
        """The id of the node whose member holds ``key``'s claim, if any."""

    @abstractmethod
    async def coalesce(self, key: str, interval: float) -> float:
        """Take ``key``'s turn for ``interval`` seconds: 0.0 if taken now, else the
        seconds until the current turn (another node's or ours) runs out."""

    @abstractmethod
    async def send(self, node_id: str | None, payload: bytes) -> bool:
        """Send ``payload`` to one node (``None``: every node, this one included).

        False when nobody can have received it (no such node is listening, or
        the backend is unreachable and the message was for another node).
        """

    @abstractmethod
    async def ping(self) -> None:
        """Raise ``ClusterDegraded`` while the shared backend cannot be reached."""

    @abstractmethod
    async def close(self) -> None:
        """Give back every slot and claim of this node and stop."""
