"""Ids reach every line logged for a request or a WebSocket: the connection's tasks
and its socket callbacks carry its ``connection_id`` whoever started them, and a
request's id comes from a trusted proxy only when it is a safe token."""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
from collections.abc import Iterator
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from scribeline.api.request_id import HEADER, REQUEST, add_request_id, request_id_middleware
from scribeline.log_context import CONNECTION_ID, REQUEST_ID, ContextIds, detached
from tests.unit.fake_socket import client_frame, connection


class _Ids(logging.Handler):
    """Keeps (message, request_id, connection_id) of each record."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(ContextIds())
        self.seen: list[tuple[str, str | None, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        ids = (getattr(record, "request_id", None), getattr(record, "connection_id", None))
        self.seen.append((record.getMessage(), *ids))


@pytest.fixture
def ids() -> Iterator[_Ids]:
    handler = _Ids()
    root = logging.getLogger("scribeline")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


log = logging.getLogger("scribeline.test")


async def test_a_connections_tasks_carry_its_id_whoever_starts_them(ids: _Ids) -> None:
    """Set at the upgrade (with the upgrade's request_id); a task spawned later from
    another request's context, or from none, still logs under the connection."""
    token = REQUEST_ID.set("upgrade-request")
    conn, _ = connection()
    REQUEST_ID.reset(token)
    other, _ = connection()
    mine = conn.context[CONNECTION_ID]
    assert mine is not None and mine != other.context[CONNECTION_ID]

    async def work() -> None:
        log.info("serving")

    async def from_elsewhere() -> None:
        REQUEST_ID.set("a-revocation")
        await conn.spawn(work())

    await asyncio.get_running_loop().create_task(from_elsewhere(), context=detached())
    assert ids.seen == [("serving", "upgrade-request", mine)]


async def test_socket_callbacks_log_under_the_connection(ids: _Ids) -> None:
    """A protocol error is logged from ``data_received``, which runs in no task of
    the connection's: the line still names it."""
    conn, socket = connection()
    contextvars.Context().run(socket.feed, client_frame(0x3, b""))
    broke = "closing a WebSocket that broke the protocol (1002: reserved opcode 3)"
    assert [(m, c) for m, _, c in ids.seen] == [(broke, conn.context[CONNECTION_ID])]


def _request(peer: str, header: str | None) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 4711) if name == "peername" else default
    )
    headers = {HEADER: header} if header is not None else {}
    return make_mocked_request("GET", "/healthz", headers=headers, transport=transport)


PROXY = (ipaddress.ip_network("10.0.0.1/32"),)


@pytest.mark.parametrize(
    ("peer", "header", "kept"),
    [
        ("10.0.0.1", "edge-01.ab_c", True),  # a trusted proxy's safe token
        ("192.0.2.9", "edge-01.ab_c", False),  # anyone else
        ("10.0.0.1", "x" * 65, False),  # too long
        ("10.0.0.1", "a b", False),
        ("10.0.0.1", "scl_0123456789abcdef", False),  # shaped like a credential
        ("10.0.0.1", None, False),
    ],
)
async def test_the_request_id_and_whose_word_is_taken(
    ids: _Ids, peer: str, header: str | None, kept: bool
) -> None:
    """Each request gets an id, set while it is handled and sent back in X-Request-ID."""
    request = _request(peer, header)

    async def handler(request: web.Request) -> web.StreamResponse:
        log.info("handled")
        return web.Response()

    response = await request_id_middleware(PROXY)(request, handler)
    rid = request[REQUEST]
    assert (rid == header) is kept
    assert len(rid) == 16 or kept
    assert ids.seen == [("handled", rid, None)]
    assert REQUEST_ID.get() is None, "the id outlived its request"
    await add_request_id(request, response)
    assert response.headers[HEADER] == rid
