"""The ids that tie log lines to an HTTP request or a WebSocket connection.

Each HTTP request gets a ``request_id`` (``api/request_id.py``) and each
WebSocket a ``connection_id`` when it is upgraded. They live in context
variables, so every line logged by the code serving a request, and by every
task it starts, carries them (:class:`ContextIds` puts them on the record).

A WebSocket outlives its request's task: after the upgrade the
:class:`~scribeline.connection.Connection` is the socket's asyncio protocol,
whose callbacks run in no request's context. The connection therefore keeps
its own context (:func:`connection_context`) and runs its tasks in it; the few
lines it logs from a callback name it explicitly (``extra``). Long-lived
shared tasks started lazily from some request (a publisher's sender) start
from :func:`detached`, so they never carry a stale id.
"""

from __future__ import annotations

import contextvars
import logging
import random

__all__ = [
    "CONNECTION_ID",
    "REQUEST_ID",
    "ContextIds",
    "connection_context",
    "detached",
    "new_id",
]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "scribeline_request_id", default=None
)
CONNECTION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "scribeline_connection_id", default=None
)

#: The record attributes (and JSON fields) the ids go in, with their variables.
_IDS = (("request_id", REQUEST_ID), ("connection_id", CONNECTION_ID))


def new_id() -> str:
    """A fresh id: 16 hexadecimal digits (64 random bits). Not a secret, so not
    from the OS's generator, which costs a system call per request."""
    return f"{random.getrandbits(64):016x}"


def connection_context() -> contextvars.Context:
    """A copy of the current context (the upgrade request's, with its
    ``request_id``) in which a new ``connection_id`` is set."""
    context = contextvars.copy_context()
    context.run(CONNECTION_ID.set, new_id())
    return context


def detached() -> contextvars.Context:
    """A context with no ids, for a task that serves no one request or connection."""
    return contextvars.Context()


class ContextIds(logging.Filter):
    """Puts the current ``request_id`` and ``connection_id`` on each record, unless
    the call named them itself (``extra={"connection_id": ...}``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _IDS:
            if getattr(record, name, None) is None:
                value = var.get()
                if value is not None:
                    setattr(record, name, value)
        return True
