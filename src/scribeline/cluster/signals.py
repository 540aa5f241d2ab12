"""Named JSON messages between nodes, and requests that wait for a reply.

The services speak in kinds (``assistant.changed``, ``bot.stop``) rather than
bytes: ``on`` registers what a node does with a notice, ``answer`` what it
replies to a request. A request is addressed to one node and waits, bounded,
for its reply; ``None`` means no reply came (no such node, a lost message, a
timeout), and the caller falls back to doing the work itself. Wire form, one
JSON object: ``{"k": kind, "d": data}``, plus ``"r"`` (request id) and
``"f"`` (the asking node) on requests; a reply has kind ``""``.

A node answers at most ``max_replies`` requests at once; a request beyond
that is dropped (logged), and its sender falls back as for a lost message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from scribeline.cluster.base import Cluster

__all__ = ["MAX_REPLIES", "Handler", "Responder", "Signals"]

log = logging.getLogger(__name__)

#: Does what a notice asks; must not block.
Handler = Callable[[dict[str, Any]], None]

#: Answers a request (its reply's data).
Responder = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

_REPLY = ""

#: Requests a node answers at once (each answer is a task awaiting its responder).
MAX_REPLIES = 1000


class Signals:
    """Named notices and requests over one node's cluster."""

    def __init__(self, cluster: Cluster, *, max_replies: int = MAX_REPLIES) -> None:
        self.cluster = cluster
        self._max_replies = max_replies
        #: Requests dropped because ``max_replies`` answers were under way.
        self.dropped = 0
        self._handlers: dict[str, Handler] = {}
        self._responders: dict[str, Responder] = {}
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def node_id(self) -> str:
        return self.cluster.node_id

    @property
    def answering(self) -> int:
        """Requests being answered now (at most ``max_replies``)."""
        return len(self._tasks)

    def on(self, kind: str, handler: Handler) -> None:
        """Run ``handler`` with the data of every ``kind`` notice this node receives."""
        self._handlers[kind] = handler

    def answer(self, kind: str, responder: Responder) -> None:
        """Reply to ``kind`` requests with what ``responder`` returns."""
        self._responders[kind] = responder

    async def broadcast(self, kind: str, data: dict[str, Any]) -> None:
        """Tell every node, this one first (handled before this returns)."""
        await self.cluster.send(None, orjson.dumps({"k": kind, "d": data}))

    async def request(
        self, node_id: str, kind: str, data: dict[str, Any], within: float
    ) -> dict[str, Any] | None:
        """Ask ``node_id``; its reply's data, or None if none came ``within`` seconds."""
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            message = {"k": kind, "d": data, "r": rid, "f": self.cluster.node_id}
            if not await self.cluster.send(node_id, orjson.dumps(message)):
                return None
            async with asyncio.timeout(within):
                return await future
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(rid, None)

    def deliver(self, payload: bytes) -> None:
        """The cluster's ``on_message``."""
        try:
            message = orjson.loads(payload)
            kind, data = message["k"], message["d"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed cluster message")
            return
        if kind == _REPLY:
            future = self._waiting.get(message.get("r"))
            if future is not None and not future.done():
                future.set_result(data)
        elif "r" in message:
            responder = self._responders.get(kind)
            if responder is None:
                return
            if len(self._tasks) >= self._max_replies:
                self.dropped += 1
                if self.dropped % 1000 == 1:  # the first, then one line per thousand
                    log.warning(
                        "dropped %d cluster requests: too many answers under way", self.dropped
                    )
                return
            self._spawn(self._reply(responder, data, message["f"], message["r"]))
        else:
            handler = self._handlers.get(kind)
            if handler is not None:
                handler(data)

    async def _reply(self, responder: Responder, data: dict[str, Any], to: str, rid: int) -> None:
        try:
            result = await responder(data)
        except Exception as exc:
            log.exception("answering a cluster request failed")
            result = {"error": type(exc).__name__}
        await self.cluster.send(to, orjson.dumps({"k": _REPLY, "d": result, "r": rid}))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Let the replies under way finish (each responder bounds its own work)."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
